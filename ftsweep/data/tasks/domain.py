"""Domain task: support-ticket triage into a category (and, above easy, a priority).

Tickets are assembled from category-specific problem sentences, product names, order numbers
and urgency cues. Held-out tickets (validation and test) use problem sentences, urgency cues and
product names that never appear in training, so the model has to read what a ticket is about
and how urgent it sounds rather than recognise a sentence it was trained on.

The reply is `category: X` (plus `, priority: Y`); quality is the share of fields right (for
easy, category only, plain accuracy), and exact match (every field right) is recorded beside it.
Difficulty: easy has 5 categories and no priority; medium adds the priority; hard has 7
categories, some of which share vocabulary, and an unrelated sentence in most tickets.
"""

from __future__ import annotations

import random

from ftsweep.config import ConfigError
from ftsweep.data.tasks import Example, Pool, TwoWayScored
from ftsweep.data.tasks.metrics import field_accuracy, fields_exact_match

PRODUCTS = Pool(
    train=(
        "SmartThermo", "PhotoBox", "FitBand", "SoundPod", "HomeHub", "PixelPad", "AirPure",
        "TrailCam",
    ),
    held_out=("KettlePro", "DeskLight", "RoboMop"),
)  # fmt: skip
PROBLEMS = {
    "billing": Pool(
        train=(
            "I was charged twice for my {product} subscription this month.",
            "My invoice shows {amount} dollars but my plan costs less than that.",
            "The payment for order {order} went through two times on my card.",
            "Why did my bill go up to {amount} dollars without any notice?",
            "I cancelled my {product} plan but you still took {amount} dollars from my account.",
            "The discount code was not applied to order {order} and I paid full price.",
        ),
        held_out=(
            "There is a {amount} dollar fee on my statement that I do not recognise.",
            "You refunded order {order} but the money was taken from my card again.",
        ),
    ),
    "shipping": Pool(
        train=(
            "My order {order} still has not arrived after {days} days.",
            "The tracking page for my {product} has not updated since last week.",
            "The courier left my {product} at the wrong address.",
            "Order {order} shows as delivered but there is no parcel at my door.",
            "The box with my {product} is stuck at the depot for {days} days now.",
            "Can you send order {order} to my office instead of my home?",
        ),
        held_out=(
            "The delivery van came for my {product} while I was out and took it away again.",
            "It has been {days} days and the package for order {order} has not left the warehouse.",
        ),
    ),
    "technical": Pool(
        train=(
            "The {product} app crashes every time I open the settings page.",
            "My {product} will not connect to wifi after the last update.",
            "I get error code {code} when I try to sync my {product}.",
            "The {product} screen stays black after I turn it on.",
            "The battery of my {product} drains in an hour since the update.",
            "My {product} keeps restarting by itself every few minutes.",
        ),
        held_out=(
            "The {product} freezes with a spinning wheel whenever I pair it with my phone.",
            "Firmware install on the {product} stops at 50 percent and shows error {code}.",
        ),
    ),
    "account": Pool(
        train=(
            "I cannot log in to my {product} account even after resetting my password.",
            "Please change the email address on account {order} to my new one.",
            "I never received the verification code to sign in to my {product} account.",
            "How do I delete account {order} and all the data in it?",
            "My username shows the wrong name on my {product} profile.",
            "Please merge my two {product} accounts into one.",
        ),
        held_out=(
            "I want to move my {product} account to a different phone number.",
            "The sign-up page says my email is already taken but I never registered with {product}.",
        ),
    ),
    "returns": Pool(
        train=(
            "I would like to return the {product} I bought, it is the wrong model.",
            "How do I send back order {order} for a refund?",
            "The {product} arrived damaged and I want to exchange it.",
            "Can I get my money back for the {product}? I no longer need it.",
            "I need a return label for order {order}, the size is wrong.",
            "The {product} I got is not what I ordered, I want to swap it.",
        ),
        held_out=(
            "My {product} stopped working within a week and I would like to hand it back.",
            "Is it too late to give back order {order}? I bought it {days} days ago.",
        ),
    ),
    # Hard only: these borrow words from account and billing tickets.
    "security": Pool(
        train=(
            "Someone logged in to my {product} account from a country I have never visited.",
            "I got an email asking for my {product} password that looks like phishing.",
            "There are {product} orders on my account that I did not place.",
            "My password was changed {days} days ago but I did not change it.",
            "I think a stranger has access to the camera of my {product}.",
            "A text message with a {product} login code arrived that I did not request.",
        ),
        held_out=(
            "Two-factor alerts for my {product} account keep coming from a device I do not own.",
            "Someone used my saved card for order {order} without my permission.",
        ),
    ),
    "feedback": Pool(
        train=(
            "I love my new {product}, just wanted to say thanks to the team.",
            "It would be great if the {product} came in more colours.",
            "The {product} is good but the manual could be clearer.",
            "Your delivery was fast and the {product} works well, keep it up.",
            "A suggestion: the {product} app would be nicer with a dark mode.",
            "I have used the {product} for {years} years and it is still great.",
        ),
        held_out=(
            "Just a note that the new {product} design looks much better than the old one.",
            "The staff who helped me set up the {product} were very friendly.",
        ),
    ),
}
CUES = {
    "low": Pool(
        train=(
            "No rush, whenever you have time.",
            "Just curious, it is not urgent.",
            "Whenever is convenient for you is fine.",
            "This can wait until next week.",
        ),
        held_out=("Take your time with this one.", "It is a minor thing, no hurry at all."),
    ),
    "normal": Pool(
        train=(
            "Could you look into it?",
            "Thanks for your help.",
            "Please let me know what to do.",
            "I would appreciate a reply.",
        ),
        held_out=("Can someone check this for me?", "Looking forward to hearing from you."),
    ),
    "urgent": Pool(
        train=(
            "This is urgent, please help today!",
            "I need this fixed immediately.",
            "Please respond ASAP, it is blocking my work.",
            "I need an answer within the hour.",
        ),
        held_out=(
            "This cannot wait, I need it sorted right now!",
            "Emergency: please act at once.",
        ),
    ),
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


class TriageTask(TwoWayScored):
    name = "domain"
    metric = "field_accuracy"
    primary = "partial"
    # Bumped whenever the same config would generate other examples: runs of another
    # version are other inputs (see ftsweep.tracking.fingerprint).
    version = 2

    def __init__(self, difficulty: str = "medium"):
        self.difficulty = difficulty
        self.categories, self.with_priority, self.aside_rate = LEVELS[difficulty]
        reply = f"category: <one of {', '.join(self.categories)}>"
        if self.with_priority:
            reply += ", priority: <low, normal or urgent>"
        self.instruction = f"Triage this support ticket. Reply exactly as `{reply}`.\n\nTicket: "

    def _example(self, rng: random.Random, held_out: bool) -> Example:
        category = rng.choice(self.categories)
        priority = rng.choice(list(CUES))
        slots = {
            "product": rng.choice(PRODUCTS.side(held_out)),
            "order": rng.randint(10000, 99999),
            "amount": rng.randint(12, 240),
            "days": rng.randint(5, 30),
            "code": rng.randint(100, 999),
            "years": rng.randint(2, 12),
        }
        sentences = [rng.choice(GREETINGS), rng.choice(PROBLEMS[category].side(held_out))]
        if rng.random() < self.aside_rate:
            sentences.insert(1 + rng.randint(0, 1), rng.choice(ASIDES))
        if self.with_priority:
            sentences.append(rng.choice(CUES[priority].side(held_out)))
        ticket = " ".join(s for s in sentences if s).format(**slots)
        reply = f"category: {category}"
        if self.with_priority:
            reply += f", priority: {priority}"
        return Example(prompt=self.instruction + ticket, completion=reply)

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Distinct tickets: training ones from the training sentences, cues and products,
        held-out ones from the held-out ones only."""
        rng = random.Random(seed)
        return self._distinct(rng, False, num_train), self._distinct(rng, True, num_eval)

    def _distinct(self, rng: random.Random, held_out: bool, count: int) -> list[Example]:
        seen: set[str] = set()
        tickets: list[Example] = []
        for _ in range(50 * count):
            if len(tickets) == count:
                return tickets
            example = self._example(rng, held_out)
            if example.prompt not in seen:
                seen.add(example.prompt)
                tickets.append(example)
        if len(tickets) == count:
            return tickets
        side = "data.num_eval + data.num_test" if held_out else "data.num_train"
        raise ConfigError(
            f"{side} = {count}: too many for the domain task's distinct tickets "
            f"(found {len(tickets)}); ask for fewer"
        )

    def score_exact(self, prediction: str, reference: str) -> float:
        return fields_exact_match(prediction, reference)

    def score_partial(self, prediction: str, reference: str) -> float:
        return field_accuracy(prediction, reference)
