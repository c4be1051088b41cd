"""Built-in tasks: deterministic, offline example generators, each with its quality metric.

A task yields prompt/completion pairs for training and a disjoint held-out set for evaluation,
and scores a generated completion against the reference with a number in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str


class Task(Protocol):
    name: str

    def split(self, num_train: int, num_eval: int, seed: int) -> tuple[list[Example], list[Example]]:
        """Train and eval examples; no eval prompt appears in training."""

    def score(self, prediction: str, reference: str) -> float:
        """Quality of one generated completion in [0, 1]."""


def get_task(name: str) -> Task:
    from ftsweep.tasks.format import FormatTask

    tasks = {"format": FormatTask}
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(sorted(tasks))}")
    return tasks[name]()
