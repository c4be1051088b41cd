"""Style and format adaptation: rewrite a sentence about an order as one strict JSON object.

The base model can read the sentence but does not know the exact schema, key order and
number formatting; fine-tuning has to teach it. Quality is exact match of the parsed JSON.
"""

from __future__ import annotations

import json
import random

from ftsweep.tasks import Example

FIRST = ["Maria", "James", "Aiko", "Omar", "Lena", "Ravi", "Chloe", "Diego", "Nora", "Felix",
         "Ines", "Tariq", "Sofia", "Mateo", "Hana", "Lukas", "Zara", "Pavel", "Amara", "Kenji"]
LAST = ["Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Patel", "Martin", "Silva", "Novak", "Klein",
        "Costa", "Aziz", "Rossi", "Garcia", "Kim", "Weber", "Okafor", "Ivanov", "Mensah", "Sato"]
CITIES = ["Lyon", "Austin", "Osaka", "Cairo", "Oslo", "Pune", "Leeds", "Porto", "Brno", "Graz",
          "Quito", "Perth", "Turin", "Malmo", "Seoul", "Bonn", "Lagos", "Minsk", "Accra", "Kobe"]
ITEMS = ["desk lamp", "headphones", "kettle", "backpack", "monitor", "keyboard", "blender",
         "tent", "camera", "printer"]
TEMPLATES = [
    "Order {id}: {first} {last} from {city} bought a {item} for {amount} dollars.",
    "{first} {last} ({city}) placed order {id}, a {item} costing {amount} dollars.",
    "A {item} for {amount} dollars was ordered by {first} {last} of {city}, order number {id}.",
    "Customer {first} {last}, based in {city}, paid {amount} dollars for a {item} (order {id}).",
]
INSTRUCTION = (
    "Rewrite the order as JSON with keys order_id (integer), customer, city, item and "
    "amount_usd (integer). Reply with the JSON only.\n\n"
)


class FormatTask:
    name = "format"

    def _example(self, rng: random.Random) -> Example:
        fields = {
            "id": rng.randint(1000, 9999),
            "first": rng.choice(FIRST),
            "last": rng.choice(LAST),
            "city": rng.choice(CITIES),
            "item": rng.choice(ITEMS),
            "amount": rng.randint(5, 500),
        }
        sentence = rng.choice(TEMPLATES).format(**fields)
        record = {
            "order_id": fields["id"],
            "customer": f"{fields['first']} {fields['last']}",
            "city": fields["city"],
            "item": fields["item"],
            "amount_usd": fields["amount"],
        }
        return Example(prompt=INSTRUCTION + sentence, completion=json.dumps(record))

    def split(self, num_train: int, num_eval: int, seed: int) -> tuple[list[Example], list[Example]]:
        rng = random.Random(seed)
        seen: set[str] = set()
        unique: list[Example] = []
        # Draw until there are enough distinct prompts; the eval set is the tail, so no eval
        # prompt can also be a training prompt.
        while len(unique) < num_train + num_eval:
            example = self._example(rng)
            if example.prompt not in seen:
                seen.add(example.prompt)
                unique.append(example)
        return unique[:num_train], unique[num_train:]

    def score(self, prediction: str, reference: str) -> float:
        try:
            return float(json.loads(prediction.strip()) == json.loads(reference))
        except json.JSONDecodeError:
            return 0.0
