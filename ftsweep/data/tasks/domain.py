"""Domain task: support-ticket triage into a category (and, above easy, a priority).

Tickets are assembled from category-specific problem sentences, product names, order numbers
and urgency cues. The reply is `category: X` (plus `, priority: Y`); quality is the share of
fields right, which for easy (category only) is plain accuracy. Difficulty: easy has 5
categories and no priority; medium adds the priority; hard has 7 categories, some of which
share vocabulary, and an unrelated sentence in most tickets.
"""

from __future__ import annotations

import random
import zlib

from ftsweep.config import ConfigError
from ftsweep.data.tasks import Example
from ftsweep.data.tasks.metrics import field_accuracy

PRODUCTS = [
    "SmartThermo",
    "PhotoBox",
    "FitBand",
    "SoundPod",
    "HomeHub",
    "PixelPad",
    "AirPure",
    "TrailCam",
    "KettlePro",
    "DeskLight",
]
PROBLEMS = {
    "billing": [
        "I was charged twice for my {product} subscription this month.",
        "My invoice shows {amount} dollars but my plan costs less than that.",
        "The payment for order {order} went through two times on my card.",
        "Why did my bill go up to {amount} dollars without any notice?",
    ],
    "shipping": [
        "My order {order} still has not arrived after {days} days.",
        "The tracking page for my {product} has not updated since last week.",
        "The courier left my {product} at the wrong address.",
        "Order {order} shows as delivered but there is no parcel at my door.",
    ],
    "technical": [
        "The {product} app crashes every time I open the settings page.",
        "My {product} will not connect to wifi after the last update.",
        "I get error code {code} when I try to sync my {product}.",
        "The {product} screen stays black after I turn it on.",
    ],
    "account": [
        "I cannot log in to my {product} account even after resetting my password.",
        "Please change the email address on account {order} to my new one.",
        "I never received the verification code to sign in to my {product} account.",
        "How do I delete account {order} and all the data in it?",
    ],
    "returns": [
        "I would like to return the {product} I bought, it is the wrong model.",
        "How do I send back order {order} for a refund?",
        "The {product} arrived damaged and I want to exchange it.",
        "Can I get my money back for the {product}? I no longer need it.",
    ],
    # Hard only: these borrow words from account and billing tickets.
    "security": [
        "Someone logged in to my {product} account from a country I have never visited.",
        "I got an email asking for my {product} password that looks like phishing.",
        "There are {product} orders on my account that I did not place.",
        "My password was changed {days} days ago but I did not change it.",
    ],
    "feedback": [
        "I love my new {product}, just wanted to say thanks to the team.",
        "It would be great if the {product} came in more colours.",
        "The {product} is good but the manual could be clearer.",
        "Your delivery was fast and the {product} works well, keep it up.",
    ],
}
CUES = {
    "low": [
        "No rush, whenever you have time.",
        "Just curious, it is not urgent.",
        "Whenever is convenient for you is fine.",
    ],
    "normal": [
        "Could you look into it?",
        "Thanks for your help.",
        "Please let me know what to do.",
    ],
    "urgent": [
        "This is urgent, please help today!",
        "I need this fixed immediately.",
        "Please respond ASAP, it is blocking my work.",
    ],
}
ASIDES = [
    "I have been a customer for {years} years.",
    "I also use your {product} at work.",
    "I wrote to you once before about something else.",
    "My sister recommended your shop.",
]
GREETINGS = ["Hi,", "Hello,", "Dear support,", ""]
LEVELS = {
    "easy": (["billing", "shipping", "technical", "account", "returns"], False, 0.0),
    "medium": (["billing", "shipping", "technical", "account", "returns"], True, 0.0),
    "hard": (
        ["billing", "shipping", "technical", "account", "returns", "security", "feedback"],
        True,
        0.8,
    ),
}


def is_eval_problem(problem: str) -> bool:
    """A fixed quarter of all problem sentences is reserved for eval, whatever the seed."""
    return zlib.crc32(problem.encode()) % 4 == 0


class TriageTask:
    name = "domain"
    metric = "field_accuracy"
    # Bumped whenever the same config would generate other examples: runs of another
    # version are other inputs (see ftsweep.tracking.fingerprint).
    version = 1

    def __init__(self, difficulty: str = "medium"):
        self.difficulty = difficulty
        self.categories, self.with_priority, self.aside_rate = LEVELS[difficulty]
        reply = f"category: <one of {', '.join(self.categories)}>"
        if self.with_priority:
            reply += ", priority: <low, normal or urgent>"
        self.instruction = f"Triage this support ticket. Reply exactly as `{reply}`.\n\nTicket: "

    def _example(self, rng: random.Random) -> tuple[str, Example]:
        """(the ticket's problem sentence, the example)."""
        category = rng.choice(self.categories)
        priority = rng.choice(list(CUES))
        slots = {
            "product": rng.choice(PRODUCTS),
            "order": rng.randint(10000, 99999),
            "amount": rng.randint(12, 240),
            "days": rng.randint(5, 30),
            "code": rng.randint(100, 999),
            "years": rng.randint(2, 12),
        }
        problem = rng.choice(PROBLEMS[category]).format(**slots)
        sentences = [rng.choice(GREETINGS), problem]
        if rng.random() < self.aside_rate:
            sentences.insert(1 + rng.randint(0, 1), rng.choice(ASIDES))
        if self.with_priority:
            sentences.append(rng.choice(CUES[priority]))
        ticket = " ".join(s for s in sentences if s).format(**slots)
        reply = f"category: {category}"
        if self.with_priority:
            reply += f", priority: {priority}"
        return problem, Example(prompt=self.instruction + ticket, completion=reply)

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Distinct tickets; a problem sentence (slots filled) belongs to eval or to training, never
        both, so eval tickets differ from every training ticket in more than greeting and tone."""
        rng = random.Random(seed)
        sides: dict[bool, list[Example]] = {True: [], False: []}
        wanted = {True: num_eval, False: num_train}
        seen: set[str] = set()
        draws = 0
        while any(len(sides[s]) < wanted[s] for s in sides):
            draws += 1
            if draws > 50 * (num_train + num_eval):
                raise ConfigError(
                    f"data.num_train={num_train}, data.num_eval={num_eval}: too many for the domain "
                    "task's "
                    "distinct tickets; ask for fewer"
                )
            problem, example = self._example(rng)
            side = is_eval_problem(problem)
            if len(sides[side]) < wanted[side] and example.prompt not in seen:
                seen.add(example.prompt)
                sides[side].append(example)
        return sides[False], sides[True]

    def score(self, prediction: str, reference: str) -> float:
        return field_accuracy(prediction, reference)
