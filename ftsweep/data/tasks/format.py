"""Style and format adaptation: rewrite a sentence about an order as one strict JSON object.

The base model can read the sentence but does not know the exact schema, key order and
number formatting; fine-tuning has to teach it. Quality is exact match of the parsed JSON.
Difficulty sets the schema: easy asks for 3 keys, medium for 5, hard for 7, including a
quantity and a spelled-out date to rewrite as YYYY-MM-DD.
"""

from __future__ import annotations

import json
import random

from ftsweep.data.tasks import Example, distinct_examples

FIRST = [
    "Maria",
    "James",
    "Aiko",
    "Omar",
    "Lena",
    "Ravi",
    "Chloe",
    "Diego",
    "Nora",
    "Felix",
    "Ines",
    "Tariq",
    "Sofia",
    "Mateo",
    "Hana",
    "Lukas",
    "Zara",
    "Pavel",
    "Amara",
    "Kenji",
]
LAST = [
    "Lopez",
    "Smith",
    "Tanaka",
    "Haddad",
    "Berg",
    "Patel",
    "Martin",
    "Silva",
    "Novak",
    "Klein",
    "Costa",
    "Aziz",
    "Rossi",
    "Garcia",
    "Kim",
    "Weber",
    "Okafor",
    "Ivanov",
    "Mensah",
    "Sato",
]
CITIES = [
    "Lyon",
    "Austin",
    "Osaka",
    "Cairo",
    "Oslo",
    "Pune",
    "Leeds",
    "Porto",
    "Brno",
    "Graz",
    "Quito",
    "Perth",
    "Turin",
    "Malmo",
    "Seoul",
    "Bonn",
    "Lagos",
    "Minsk",
    "Accra",
    "Kobe",
]
ITEMS = [
    "desk lamp",
    "headphones",
    "kettle",
    "backpack",
    "monitor",
    "keyboard",
    "blender",
    "tent",
    "camera",
    "printer",
]
TEMPLATES = [
    "Order {id}: {first} {last} from {city} bought a {item} for {amount} dollars.",
    "{first} {last} ({city}) placed order {id}, a {item} costing {amount} dollars.",
    "A {item} for {amount} dollars was ordered by {first} {last} of {city}, order number {id}.",
    "Customer {first} {last}, based in {city}, paid {amount} dollars for a {item} (order {id}).",
]
# Hard sentences also carry a quantity and a spelled-out date the JSON must write as ISO 8601.
HARD_TEMPLATES = [
    "Order {id}: on {date}, {first} {last} from {city} bought {qty} x {item} for {amount} dollars.",
    "{first} {last} ({city}) placed order {id} on {date}: {qty} units of {item}, {amount} dollars in all.",
    "On {date} {qty} x {item} were ordered by {first} {last} of {city} for {amount} dollars, order number {id}.",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
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


class FormatTask:
    name = "format"
    metric = "json_exact_match"
    # Bumped whenever the same config would generate other examples: runs of another
    # version are other inputs (see ftsweep.tracking.fingerprint).
    version = 1

    def __init__(self, difficulty: str = "medium"):
        self.difficulty = difficulty
        self.keys = KEYS[difficulty]
        self.templates = HARD_TEMPLATES if difficulty == "hard" else TEMPLATES
        self.instruction = instruction(self.keys)

    def _example(self, rng: random.Random) -> Example:
        fields = {
            "id": rng.randint(1000, 9999),
            "first": rng.choice(FIRST),
            "last": rng.choice(LAST),
            "city": rng.choice(CITIES),
            "item": rng.choice(ITEMS),
            "amount": rng.randint(5, 500),
        }
        if self.difficulty == "hard":
            year, month, day = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
            fields["qty"] = rng.randint(2, 9)
            fields["date"] = f"{MONTHS[month - 1]} {day}, {year}"
            fields["iso_date"] = f"{year}-{month:02d}-{day:02d}"
        sentence = rng.choice(self.templates).format(**fields)
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
        rng = random.Random(seed)
        # Distinct prompts only; the eval set is the tail, so no eval prompt is also a training one.
        unique = distinct_examples(
            lambda: self._example(rng), num_train + num_eval, 20 * (num_train + num_eval)
        )
        return unique[:num_train], unique[num_train:]

    def score(self, prediction: str, reference: str) -> float:
        """1 when the reply parses as JSON equal to the reference (key order aside), else 0."""
        try:
            return float(json.loads(prediction.strip()) == json.loads(reference))
        except json.JSONDecodeError:
            return 0.0
