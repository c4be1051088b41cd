"""Tasks: where a trial's examples come from, and how a generated reply is scored.

Built-in tasks are deterministic, offline example generators (`format`, `knowledge`, `domain`),
each with a `difficulty`; `jsonl` reads the user's own data. Every task yields prompt/completion
pairs for training and a held-out set for evaluation that shares no prompt with training, and
scores a generated completion against the reference with a number in [0, 1].
"""

from __future__ import annotations

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


class Task(Protocol):
    name: str
    metric: str  # the name of what `score` measures, for records

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Train and eval examples; no eval prompt appears in training."""

    def score(self, prediction: str, reference: str) -> float:
        """Quality of one generated completion in [0, 1]."""


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
        f"data.num_train + data.num_eval = {count}: the task generated only {len(unique)} "
        f"distinct examples in {max_draws} draws; ask for fewer or raise data.difficulty"
    )
