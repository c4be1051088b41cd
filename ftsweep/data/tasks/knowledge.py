"""Knowledge injection: facts about a fictional product catalogue the base model cannot know.

The seed draws a catalogue (products made up for this task, each with a maker, a city, a colour
and a launch year). Training asks about every fact in two phrasings and adds a short profile of
each product; evaluation asks about the same facts in four other phrasings that never appear in
training, so a correct answer needs the fact, not the wording. Quality is normalized exact match;
word-overlap F1 (partial credit) is recorded beside it. The held-out questions are as many as
the catalogue has facts times four: fewer than a generated task's 512 at every difficulty, and
questions about one fact are not independent, so intervals here are wider than they look.
Difficulty sets the catalogue: easy 6 products x 2 facts, medium 10 x 3, hard 16 x 4.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ftsweep.data.tasks import Example, TwoWayScored
from ftsweep.data.tasks.metrics import exact_match, token_f1

PRODUCTS = [
    "Zarnik lamp",
    "Quillo drone",
    "Brevant kettle",
    "Movix speaker",
    "Tolsa backpack",
    "Ferrow bicycle",
    "Glimmet watch",
    "Osprel tent",
    "Kandu blender",
    "Vettra scooter",
    "Plumo pillow",
    "Rendix router",
    "Sallow jacket",
    "Nubra camera",
    "Trevik stove",
    "Hollin guitar",
]
MAKERS = [
    "Orvane Labs",
    "Tessik Works",
    "Bramwell Goods",
    "Cobalt Finch",
    "Ludra Systems",
    "Pennick Craft",
    "Mistral Forge",
    "Yarrow Industries",
]
CITIES = ["Lisbon", "Nairobi", "Montreal", "Krakow", "Hanoi", "Valparaiso", "Tallinn", "Dublin"]
COLOURS = ["teal", "crimson", "mustard", "lavender", "charcoal", "olive", "coral", "navy"]
YEARS = [str(year) for year in range(2031, 2047)]

VALUES = {"maker": MAKERS, "city": CITIES, "colour": COLOURS, "year": YEARS}
# Question phrasings: training sees only TRAIN_ASK, evaluation only EVAL_ASK.
TRAIN_ASK = {
    "maker": ["Who makes the {p}?", "Which company produces the {p}?"],
    "city": ["Where is the {p} made?", "In which city is the {p} manufactured?"],
    "colour": ["What color is the {p}?", "Which color does the {p} come in?"],
    "year": ["When was the {p} launched?", "In which year did the {p} come out?"],
}
EVAL_ASK = {
    "maker": [
        "Name the manufacturer of the {p}.",
        "The {p} is built by which firm?",
        "What brand is behind the {p}?",
        "Tell me the maker of the {p}.",
    ],
    "city": [
        "Name the city where the {p} is produced.",
        "The {p} comes from a factory in which city?",
        "Where does the {p} get built?",
        "Tell me the city the {p} is made in.",
    ],
    "colour": [
        "Name the colour of the {p}.",
        "The {p} is sold in what colour?",
        "What shade does the {p} have?",
        "Tell me the colour of the {p}.",
    ],
    "year": [
        "Name the launch year of the {p}.",
        "The {p} was first released in what year?",
        "What year did the {p} reach the market?",
        "Tell me when the {p} first went on sale.",
    ],
}
PROFILE_ASK = "Describe the {p} from the Zephyr product handbook."
PROFILE_SENTENCES = {
    "maker": "The {p} is made by {maker}.",
    "city": "It is manufactured in {city}.",
    "colour": "It comes in {colour}.",
    "year": "It was launched in {year}.",
}
HELD_OUT_PHRASINGS = 4
INSTRUCTION = "Answer from the Zephyr product handbook in a few words.\n\n"
LEVELS = {
    "easy": (6, ["maker", "colour"]),
    "medium": (10, ["maker", "city", "colour"]),
    "hard": (16, ["maker", "city", "colour", "year"]),
}


@dataclass(frozen=True)
class Fact:
    product: str
    attribute: str
    value: str


class KnowledgeTask(TwoWayScored):
    name = "knowledge"
    metric = "exact_match"
    primary = "exact"
    # Bumped whenever the same config would generate other examples: runs of another
    # version are other inputs (see ftsweep.tracking.fingerprint).
    version = 2

    def __init__(self, difficulty: str = "medium"):
        self.difficulty = difficulty
        self.num_products, self.attributes = LEVELS[difficulty]

    def catalogue(self, seed: int) -> dict[str, dict[str, str]]:
        """product -> attribute -> value, drawn by the seed."""
        rng = random.Random(seed)
        products = rng.sample(PRODUCTS, self.num_products)
        return {p: {a: rng.choice(VALUES[a]) for a in self.attributes} for p in products}

    def facts(self, seed: int) -> list[Fact]:
        return [
            Fact(p, a, v) for p, attrs in self.catalogue(seed).items() for a, v in attrs.items()
        ]

    def _profile(self, product: str, values: dict[str, str]) -> Example:
        text = " ".join(PROFILE_SENTENCES[a].format(p=product, **values) for a in self.attributes)
        return Example(PROFILE_ASK.format(p=product), text)

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Up to `num_train` training examples (the pool is finite) and up to `num_eval` questions
        about facts that training covers, each in a phrasing training never uses."""
        rng = random.Random(seed + 1)
        catalogue = self.catalogue(seed)
        facts = self.facts(seed)
        # Round k holds the k-th training phrasing of every fact, so a short training set still
        # covers each fact once before any fact is asked twice; profiles come last.
        rounds: list[list[tuple[Example, list[Fact]]]] = [[], []]
        for fact in facts:
            phrasings = rng.sample(TRAIN_ASK[fact.attribute], 2)
            for k, ask in enumerate(phrasings):
                example = Example(INSTRUCTION + ask.format(p=fact.product), fact.value)
                rounds[k].append((example, [fact]))
        profiles = [
            (self._profile(p, values), [f for f in facts if f.product == p])
            for p, values in catalogue.items()
        ]
        rounds.append(profiles)
        pool = []
        for group in rounds:
            rng.shuffle(group)
            pool.extend(group)
        train_pairs = pool[:num_train]
        covered = {fact for _, taught in train_pairs for fact in taught}

        # Round k holds the k-th held-out phrasing of every fact: a short eval set still asks
        # about as many facts as it can before asking one twice.
        questions: list[list[Example]] = [[] for _ in range(HELD_OUT_PHRASINGS)]
        for fact in (f for f in facts if f in covered):
            phrasings = rng.sample(EVAL_ASK[fact.attribute], HELD_OUT_PHRASINGS)
            for k, ask in enumerate(phrasings):
                questions[k].append(Example(INSTRUCTION + ask.format(p=fact.product), fact.value))
        eval_pool = []
        for group in questions:
            rng.shuffle(group)
            eval_pool.extend(group)
        return [example for example, _ in train_pairs], eval_pool[:num_eval]

    def score_exact(self, prediction: str, reference: str) -> float:
        return exact_match(prediction, reference)

    def score_partial(self, prediction: str, reference: str) -> float:
        return token_f1(prediction, reference)
