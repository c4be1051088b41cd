"""Style and format adaptation: rewrite a sentence about an order as one strict JSON object.

The base model can read the sentence but does not know the exact schema, key order and
number formatting; fine-tuning has to teach it. Held-out examples (validation and test) are
written with sentence templates and names, cities and items that never appear in training, so
a right answer needs the mapping from sentence to JSON, not a memory of training sentences.

Each reply is scored two ways: the share of the keys whose value is right (partial credit,
the quality), and whether the whole object is right (exact match). Difficulty sets the schema:
easy asks for 3 keys, medium for 5, hard for 7, including a quantity and a spelled-out date to
rewrite as YYYY-MM-DD.
"""

from __future__ import annotations

import json
import random

from ftsweep.data.tasks import Example, Pool, TwoWayScored, distinct_examples
from ftsweep.data.tasks.metrics import json_exact_match, json_field_accuracy

FIRST = Pool(
    train=(
        "Maria", "James", "Aiko", "Omar", "Lena", "Ravi", "Chloe", "Diego", "Nora", "Felix",
        "Ines", "Tariq", "Sofia", "Mateo", "Hana", "Lukas", "Zara", "Pavel", "Amara", "Kenji",
        "Priya", "Hugo", "Elif", "Samir",
    ),
    held_out=("Yara", "Tomas", "Leila", "Anders", "Mina", "Kofi", "Greta", "Arjun"),
)  # fmt: skip
LAST = Pool(
    train=(
        "Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Patel", "Martin", "Silva", "Novak",
        "Klein", "Costa", "Aziz", "Rossi", "Garcia", "Kim", "Weber", "Okafor", "Ivanov",
        "Mensah", "Sato", "Dubois", "Nilsen", "Moreau", "Kowalski",
    ),
    held_out=(
        "Fischer", "Romero", "Yilmaz", "Lindqvist", "Nakamura", "Adeyemi", "Horvat", "Castillo",
    ),
)  # fmt: skip
CITIES = Pool(
    train=(
        "Lyon", "Austin", "Osaka", "Cairo", "Oslo", "Pune", "Leeds", "Porto", "Brno", "Graz",
        "Quito", "Perth", "Turin", "Malmo", "Seoul", "Bonn", "Lagos", "Minsk", "Accra", "Kobe",
        "Riga", "Cork", "Nantes", "Dakar",
    ),
    held_out=("Bergen", "Kyoto", "Tunis", "Ghent", "Bilbao", "Leipzig", "Denver", "Hobart"),
)  # fmt: skip
ITEMS = Pool(
    train=(
        "desk lamp", "headset", "kettle", "backpack", "monitor", "keyboard", "blender", "tent",
        "camera", "printer", "toaster", "suitcase", "speaker", "desk chair", "water bottle",
    ),
    held_out=("microwave", "bookshelf", "hair dryer", "yoga mat", "coffee grinder"),
)  # fmt: skip
SLOTS = {"first": FIRST, "last": LAST, "city": CITIES, "item": ITEMS}

# Sentence templates, the training ones apart from the held-out ones: a held-out sentence is
# built in a way training never shows (word order, how the amount and the id are written).
TEMPLATES = Pool(
    train=(
        "Order {id}: {first} {last} from {city} bought a {item} for {amount} dollars.",
        "{first} {last} ({city}) placed order {id}, a {item} costing {amount} dollars.",
        "A {item} for {amount} dollars was ordered by {first} {last} of {city}, order number {id}.",
        "Customer {first} {last}, based in {city}, paid {amount} dollars for a {item} (order {id}).",
        "New order #{id} from {city}: one {item}, ${amount}, customer {first} {last}.",
        "{first} {last} in {city} just bought a {item}. Total: {amount} USD. Ref {id}.",
        "Invoice {id} - {item} - {amount} dollars - billed to {first} {last}, {city}.",
        "We shipped a {item} to {first} {last} in {city}; they paid ${amount} under order {id}.",
    ),
    held_out=(
        "Please log this sale: {first} {last} of {city} got a {item} at {amount} dollars, order ID {id}.",
        "For order {id}, the buyer was {first} {last}; the {item} cost ${amount} and goes to {city}.",
        "{city} customer {first} {last} purchased one {item} ({amount} USD), reference number {id}.",
        "Sold: {item}, {amount} dollars. Buyer: {first} {last}, from {city}. Order: {id}.",
    ),
)
# Hard sentences also carry a quantity and a spelled-out date the JSON must write as ISO 8601.
HARD_TEMPLATES = Pool(
    train=(
        "Order {id}: on {date}, {first} {last} from {city} bought {qty} x {item} for {amount} dollars.",
        "{first} {last} ({city}) placed order {id} on {date}: {qty} units of {item}, {amount} dollars in all.",
        "On {date} {qty} x {item} were ordered by {first} {last} of {city} for {amount} dollars, order number {id}.",
        "Invoice {id}, dated {date}: {qty} x {item}, ${amount} total, billed to {first} {last}, {city}.",
        "{first} {last} in {city} bought {qty} of the {item} on {date}. Total: {amount} USD. Ref {id}.",
        "New order #{id} ({date}) from {city}: {item} x{qty}, ${amount}, customer {first} {last}.",
    ),
    held_out=(
        "Please log this sale from {date}: {first} {last} of {city} got {qty} x {item} at {amount} dollars in total, order ID {id}.",
        "For order {id}, placed {date}, the buyer was {first} {last}; {qty} units of {item} cost ${amount} and go to {city}.",
        "Sold on {date}: {item}, quantity {qty}, {amount} dollars. Buyer: {first} {last}, from {city}. Order: {id}.",
    ),
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
# The keys each difficulty asks for, in the order the JSON must list them.
KEYS = {
    "easy": ["order_id", "customer", "item"],
    "medium": ["order_id", "customer", "city", "item", "amount_usd"],
    "hard": ["order_id", "order_date", "customer", "city", "item", "quantity", "amount_usd"],
}
KEY_TYPES = {
    "order_id": " (integer)",
    "amount_usd": " (integer)",
    "quantity": " (integer)",
    "order_date": " (YYYY-MM-DD)",
}


def instruction(keys: list[str]) -> str:
    named = [k + KEY_TYPES.get(k, "") for k in keys]
    listed = ", ".join(named[:-1]) + " and " + named[-1]
    return f"Rewrite the order as JSON with keys {listed}. Reply with the JSON only.\n\n"


INSTRUCTION = instruction(KEYS["medium"])


def spelled_date(rng: random.Random, year: int, month: int, day: int) -> str:
    """`March 3, 2024` or `3 March 2024`: both spellings on both sides of the split."""
    name = MONTHS[month - 1]
    return f"{name} {day}, {year}" if rng.random() < 0.5 else f"{day} {name} {year}"


class FormatTask(TwoWayScored):
    name = "format"
    metric = "json_field_accuracy"
    primary = "partial"
    # Bumped whenever the same config would generate other examples: runs of another
    # version are other inputs (see ftsweep.tracking.fingerprint).
    version = 2

    def __init__(self, difficulty: str = "medium"):
        self.difficulty = difficulty
        self.keys = KEYS[difficulty]
        self.templates = HARD_TEMPLATES if difficulty == "hard" else TEMPLATES
        self.instruction = instruction(self.keys)

    def _example(self, rng: random.Random, held_out: bool) -> Example:
        fields: dict = {slot: rng.choice(pool.side(held_out)) for slot, pool in SLOTS.items()}
        fields |= {"id": rng.randint(1000, 9999), "amount": rng.randint(5, 500)}
        if self.difficulty == "hard":
            year, month, day = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
            fields["qty"] = rng.randint(2, 9)
            fields["date"] = spelled_date(rng, year, month, day)
            fields["iso_date"] = f"{year}-{month:02d}-{day:02d}"
        sentence = rng.choice(self.templates.side(held_out)).format(**fields)
        values = {
            "order_id": fields["id"],
            "order_date": fields.get("iso_date"),
            "customer": f"{fields['first']} {fields['last']}",
            "city": fields["city"],
            "item": fields["item"],
            "quantity": fields.get("qty"),
            "amount_usd": fields["amount"],
        }
        record = {key: values[key] for key in self.keys}
        return Example(prompt=self.instruction + sentence, completion=json.dumps(record))

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Training examples from the training templates and values; held-out ones from the
        held-out templates and values only, so the two share no sentence form and no name."""
        rng = random.Random(seed)
        train = distinct_examples(lambda: self._example(rng, False), num_train, 20 * num_train)
        held_out = distinct_examples(lambda: self._example(rng, True), num_eval, 20 * num_eval)
        return train, held_out

    def score_exact(self, prediction: str, reference: str) -> float:
        """1 when the reply parses as JSON equal to the reference (key order aside), else 0."""
        return json_exact_match(prediction, reference)

    def score_partial(self, prediction: str, reference: str) -> float:
        """The share of the keys whose value the reply writes right."""
        return json_field_accuracy(prediction, reference)
