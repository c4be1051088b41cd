"""Reply-vs-reference scores in [0, 1] shared by the tasks."""

from __future__ import annotations

import json
import re
import string
from collections import Counter

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (as SQuAD's evaluation does)."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of word precision and recall after normalizing; 1 for an exact match."""
    predicted, expected = normalize(prediction).split(), normalize(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def parse_fields(text: str) -> dict[str, str]:
    """`key: value` pairs separated by commas or new lines, keys and values normalized."""
    fields: dict[str, str] = {}
    for part in re.split(r"[,\n;]", text):
        key, sep, value = part.partition(":")
        if sep:
            fields.setdefault(normalize(key), normalize(value))
    return fields


def field_accuracy(prediction: str, reference: str) -> float:
    """The share of the reference's `key: value` fields the reply gets right."""
    expected = parse_fields(reference)
    predicted = parse_fields(prediction)
    if not expected:
        return 0.0
    return sum(predicted.get(key) == value for key, value in expected.items()) / len(expected)


_JSON_PAIR = re.compile(r'"([^"]+)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)')


def json_fields(text: str) -> dict:
    """The key/value pairs of a reply meant to be one JSON object: the parsed object when it
    parses, else the `"key": value` pairs that can be read from it (a reply cut short, or with
    a stray word around it, still gets credit for the fields it wrote)."""
    text = text.strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            return parsed
    except json.JSONDecodeError:
        pass
    fields: dict = {}
    for key, raw in _JSON_PAIR.findall(text):
        try:
            fields.setdefault(key, json.loads(raw))
        except json.JSONDecodeError:
            continue
    return fields


def json_exact_match(prediction: str, reference: str) -> float:
    """1 when the reply parses as one JSON object equal to the reference (key order aside)."""
    try:
        return float(json.loads(prediction.strip()) == json.loads(reference))
    except json.JSONDecodeError:
        return 0.0


def json_field_accuracy(prediction: str, reference: str) -> float:
    """The share of the reference's keys whose value the reply writes exactly (type included:
    `"125"` is not `125`)."""
    expected = json.loads(reference)
    predicted = json_fields(prediction)
    return sum(
        key in predicted and predicted[key] == value for key, value in expected.items()
    ) / len(expected)


def fields_exact_match(prediction: str, reference: str) -> float:
    """1 when every `key: value` field of the reference is right."""
    return float(field_accuracy(prediction, reference) == 1.0)
