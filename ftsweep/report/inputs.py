"""Which runs may be compared: runs are grouped by what they were trained and scored on.

Every run carries the tag `ftsweep.inputs`, a short id of its inputs (model and its fingerprint,
the whole data config and its fingerprint, the evaluation settings; `ftsweep.tracking.record`).
Runs with different ids are never compared: the report writes one report per group. Runs
recorded before the tag existed are grouped by the model and data params they have (their
evaluation settings were not recorded, so they cannot count).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ftsweep.tracking.record import TAG_INPUTS, inputs_id

# Old runs: eval settings were recorded by the base-model run but not by trials, so a key that
# counted them would part a sweep's base model from its trials.
_NOT_RECORDED_BEFORE = ("max_new_tokens", "eval_batch_size")


class HasInputs(Protocol):
    @property
    def params(self) -> Mapping[str, str]: ...

    @property
    def tags(self) -> Mapping[str, str]: ...


Row = TypeVar("Row", bound=HasInputs)


def inputs_key(tags: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, bool]:
    """(the inputs id, whether the run recorded it): the tag, else an id of its params."""
    tagged = tags.get(TAG_INPUTS)
    if tagged:
        return tagged, True
    known = {k: v for k, v in params.items() if k not in _NOT_RECORDED_BEFORE}
    return inputs_id(known), False


@dataclass
class InputsGroup(Generic[Row]):
    """Runs trained and scored on the same inputs (the base model's run included)."""

    id: str
    tagged: bool  # False: runs recorded before `ftsweep.inputs`, grouped by their params
    rows: list[Row]

    @property
    def folder(self) -> str:
        """The id as a folder name under the sweep's report folder."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.id).strip(".")[:64] or "inputs"

    @property
    def params(self) -> Mapping[str, str]:
        # The inputs params are the same on every run of the group; the first run's stand.
        return self.rows[0].params

    def describe(self) -> dict[str, str]:
        return describe_inputs(self.params)


def split_by_inputs(rows: list[Row]) -> list[InputsGroup[Row]]:
    """Runs grouped by inputs, in the order each group's first run appears."""
    groups: dict[str, InputsGroup[Row]] = {}
    for row in rows:
        key, tagged = inputs_key(row.tags, row.params)
        if key not in groups:
            groups[key] = InputsGroup(key, tagged, [])
        groups[key].rows.append(row)
    return list(groups.values())


def _value(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "", "None") else str(value)


def describe_inputs(params: Mapping[str, str]) -> dict[str, str]:
    """What a person needs to tell one group's inputs from another's, in a few words each:
    model, data, difficulty, sizes and evaluation settings ("?" where a run did not record it)."""
    model = _value(params, "model") or "?"
    path = _value(params, "model.path")
    fingerprint = _value(params, "model.fingerprint")
    model_text = model
    extras = [
        p for p in (path if path != model else None, fingerprint and f"weights {fingerprint}") if p
    ]
    if extras:
        model_text += f" ({', '.join(extras)})"
    data = _value(params, "data") or "?"
    task = _value(params, "data.task")
    where = _value(params, "data.path")
    data_text = data if task in (None, data) else f"{data} (task {task})"
    if where:
        eval_path = _value(params, "data.eval_path")
        data_text += f": {where}" + (f", eval {eval_path}" if eval_path else "")
    sizes = [
        f"{_value(params, key)} {label}"
        for key, label in (
            ("data.num_train", "train"),
            ("data.num_eval", "validation"),
            ("data.num_test", "test"),
        )
        if _value(params, key)
    ]
    evaluation = [
        f"{label} {_value(params, key)}"
        for key, label in (
            ("data.metric", "metric"),
            ("max_new_tokens", "max new tokens"),
            ("data.seed", "data seed"),
        )
        if _value(params, key)
    ]
    return {
        "model": model_text,
        "data": data_text,
        "difficulty": _value(params, "data.difficulty") or ("n/a" if where else "?"),
        "sizes": ", ".join(sizes) or "?",
        "evaluation": ", ".join(evaluation) or "?",
    }


def inputs_sentence(group: InputsGroup) -> str:
    d = group.describe()
    if not group.tagged:
        return (
            f"inputs {group.id} (runs recorded without an inputs id, grouped by their model and "
            f"data params): model {d['model']}; data {d['data']}."
        )
    return (
        f"inputs {group.id}: model {d['model']}; data {d['data']}, difficulty {d['difficulty']}; "
        f"examples {d['sizes']}; {d['evaluation']}."
    )
