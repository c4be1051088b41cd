"""Tasks: where a trial's examples come from, and how a generated reply is scored.

Built-in tasks are deterministic, offline example generators (`format`, `knowledge`, `domain`),
each with a `difficulty`; `jsonl` reads the user's own data. Every task yields prompt/completion
pairs for training and a held-out set that shares no prompt with training, and scores a
generated completion against the reference with a number in [0, 1]. `three_way_split` cuts the
held-out set into a validation split (what runs are selected on) and a test split (scored for
every finished run, never used to select one).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ftsweep.config import DataConfig

DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    # Earlier turns of a conversation as (role, content), ending with the user's turn; when set,
    # the chat template frames these instead of `prompt` alone.
    context: tuple[tuple[str, str], ...] = ()
    # Plain text: no chat template; the prompt is continued as it is.
    plain: bool = False

    def turns(self) -> list[dict[str, str]]:
        if self.context:
            return [{"role": role, "content": content} for role, content in self.context]
        return [{"role": "user", "content": self.prompt}]

    @property
    def key(self) -> tuple:
        """What the model is shown: two examples with the same key are the same question."""
        return (self.context or self.prompt, self.plain)


@dataclass(frozen=True)
class Pool:
    """Values of one slot of a generated example (a name, a template): training examples draw
    from `train`, held-out ones from `held_out`, so the two never share that surface."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]

    def side(self, held_out: bool) -> tuple[str, ...]:
        return self.held_out if held_out else self.train


class Task(Protocol):
    name: str
    metric: str  # the name of what `score` measures, for records

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Train and eval examples; no eval prompt appears in training."""

    def score(self, prediction: str, reference: str) -> float:
        """Quality of one generated completion in [0, 1]."""

    def scores(self, prediction: str, reference: str) -> dict[str, float]:
        """Both views of one completion: `exact` and `partial` (see `TwoWayScored`)."""


class TwoWayScored:
    """A task that scores each reply two ways: `exact` (the whole reply right, 0 or 1) and
    `partial` (the share of it right: fields, words). `primary` names the one recorded as
    quality; both are recorded, so a reply that is nearly right is told from one that is wrong,
    and a strict user still sees the strict number."""

    primary = "partial"

    def score_exact(self, prediction: str, reference: str) -> float:
        raise NotImplementedError

    def score_partial(self, prediction: str, reference: str) -> float:
        raise NotImplementedError

    def scores(self, prediction: str, reference: str) -> dict[str, float]:
        return {
            "exact": self.score_exact(prediction, reference),
            "partial": self.score_partial(prediction, reference),
        }

    def score(self, prediction: str, reference: str) -> float:
        return self.scores(prediction, reference)[self.primary]


def example_id(example: Example) -> str:
    """A stable id of what an example asks: the same in every run with the same inputs."""
    text = json.dumps([example.context or example.prompt, example.plain], ensure_ascii=False)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


def three_way_split(task: Task, data: DataConfig) -> Splits:
    """Train, validation and test examples: the task's held-out set (data.num_eval +
    data.num_test asked for) shuffled by data.seed and cut in that proportion, so both held-out
    splits share nothing with training and neither is easier by construction."""
    from ftsweep.config import ConfigError

    train, held_out = task.split(data.num_train, data.num_eval + data.num_test, data.seed)
    held_out = list(held_out)
    if len(held_out) < 2:
        raise ConfigError(
            f"data: only {len(held_out)} held-out example(s); a validation and a test split "
            "need at least two (raise data.num_eval/data.num_test or give more data)"
        )
    random.Random(data.seed).shuffle(held_out)
    wanted = round(len(held_out) * data.num_eval / (data.num_eval + data.num_test))
    cut = min(max(1, wanted), len(held_out) - 1)
    return Splits(train, held_out[:cut], held_out[cut:])


# Below this many examples a split's interval is wide (about +-0.1 for a quality near 0.5).
FEW_EXAMPLES = 100


def warn_if_few(splits: Splits) -> None:
    """Warn when a held-out split is too small for its interval to tell runs apart."""
    import logging

    for name, examples in (("validation", splits.validation), ("test", splits.test)):
        if len(examples) < FEW_EXAMPLES:
            logging.getLogger(__name__).warning(
                "the %s split has %d examples (under %d): its quality interval is wide, and "
                "runs closer than about %.2f cannot be told apart",
                name,
                len(examples),
                FEW_EXAMPLES,
                1 / len(examples) ** 0.5,
            )


def builtin_tasks() -> dict[str, type]:
    from ftsweep.data.tasks.domain import TriageTask
    from ftsweep.data.tasks.format import FormatTask
    from ftsweep.data.tasks.knowledge import KnowledgeTask

    return {"format": FormatTask, "knowledge": KnowledgeTask, "domain": TriageTask}


def get_task(data: DataConfig | str) -> Task:
    """The task a data config names; a bare name gives a built-in task at medium difficulty."""
    from ftsweep.config import ConfigError

    name = data if isinstance(data, str) else data.task
    if name == "jsonl":
        if isinstance(data, str):
            raise ConfigError("data=jsonl needs its data config (data.path names the file)")
        from ftsweep.data.tasks.user import UserDataTask

        return UserDataTask(data)
    tasks = builtin_tasks()
    if name not in tasks:
        allowed = ", ".join([*sorted(tasks), "jsonl"])
        raise ConfigError(f"data.task={name!r}: no such task (allowed: {allowed})")
    difficulty = "medium" if isinstance(data, str) else (data.difficulty or "medium")
    return tasks[name](difficulty=difficulty)


def distinct_examples(draw, count: int, max_draws: int) -> list[Example]:
    """`count` examples with distinct prompts from a generator; fails clearly if it runs dry."""
    seen: set[tuple] = set()
    unique: list[Example] = []
    for _ in range(max_draws):
        if len(unique) == count:
            return unique
        example = draw()
        if example.key not in seen:
            seen.add(example.key)
            unique.append(example)
    if len(unique) == count:
        return unique
    from ftsweep.config import ConfigError

    raise ConfigError(
        f"{count} examples asked for: the task generated only {len(unique)} distinct ones in "
        f"{max_draws} draws; ask for fewer (data.num_train, data.num_eval, data.num_test) or "
        "raise data.difficulty"
    )
