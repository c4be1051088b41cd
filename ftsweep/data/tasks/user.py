"""The user's own data (`data=jsonl data.path=...`) as a task.

Four common record formats, detected from the first record or named by `data.format`:

- messages: `{"messages": [{"role": "user", "content": ...}, ..., {"role": "assistant", ...}]}`;
  the last assistant turn is learned, the turns before it are the prompt.
- alpaca: `{"instruction": ..., "input": ..., "output": ...}` (input optional).
- prompt_completion: `{"prompt": ..., "completion": ...}`.
- text: `{"text": ...}`; trained as plain text (no chat template). Eval continues the first half
  of each held-out text and scores the continuation against the words that follow.

The eval split is the one given (data.eval_path, or an eval/validation/test split in the
folder), else `data.eval_fraction` of the examples held out by `data.seed`. Either way, a
training example with an eval example's prompt (or, for text, the same text) is dropped, so no
eval question is ever trained on.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from ftsweep.config import ConfigError
from ftsweep.data.tasks import Example, TwoWayScored
from ftsweep.data.tasks.metrics import exact_match, token_f1
from ftsweep.data.tasks.user_files import Record, read_source

if TYPE_CHECKING:
    from ftsweep.config import DataConfig

FORMATS = ("messages", "alpaca", "prompt_completion", "text")
# What identifies each format, checked in this order.
FORMAT_KEYS = {
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
ROLES = ("system", "user", "assistant")
DEFAULT_EVAL_FRACTION = 0.1
log = logging.getLogger(__name__)
# Words of a held-out text that its continuation is scored against (about max_new_tokens' worth).
CONTINUATION_WORDS = 32


def detect_format(record: Record) -> str:
    if isinstance(record.value, dict):
        for name, keys in FORMAT_KEYS.items():
            if all(k in record.value for k in keys):
                return name
        found = ", ".join(sorted(record.value)) or "none"
    else:
        found = f"a {type(record.value).__name__}, not an object"
    raise ConfigError(
        f"{record.where}: cannot tell the data format (keys: {found}); expected messages, "
        "instruction+output (alpaca), prompt+completion, or text; or set data.format"
    )


def _text_field(record: Record, key: str, fmt: str, required: bool = True) -> str:
    value = record.value.get(key)
    if value is None and not required:
        return ""
    if key not in record.value:
        raise ConfigError(
            f"{record.where}: missing key {key!r} (format {fmt} needs {', '.join(FORMAT_KEYS[fmt])})"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{record.where}: {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ConfigError(f"{record.where}: {key!r} is empty")
    return value


def _from_messages(record: Record) -> Example:
    turns = record.value.get("messages")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(
            f"{record.where}: 'messages' must be a non-empty list of {{role, content}} objects"
        )
    pairs = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ConfigError(
                f"{record.where}: messages[{i}] must be an object with 'role' and 'content'"
            )
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise ConfigError(
                f"{record.where}: messages[{i}].role is {role!r}; allowed: {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise ConfigError(
                f"{record.where}: messages[{i}].content must be a string, got {type(content).__name__}"
            )
        pairs.append((role, content))
    if pairs[-1][0] != "assistant" or not pairs[-1][1].strip():
        raise ConfigError(
            f"{record.where}: the last message must be a non-empty assistant reply (it is {pairs[-1][0]!r})"
        )
    context = tuple(pairs[:-1])
    users = [content for role, content in context if role == "user"]
    if not users:
        raise ConfigError(f"{record.where}: no user message before the assistant reply")
    return Example(prompt=users[-1], completion=pairs[-1][1], context=context)


def to_example(record: Record, fmt: str) -> Example:
    if not isinstance(record.value, dict):
        raise ConfigError(
            f"{record.where}: expected a JSON object, got {type(record.value).__name__}"
        )
    if fmt == "messages":
        return _from_messages(record)
    if fmt == "alpaca":
        instruction = _text_field(record, "instruction", fmt)
        extra = _text_field(record, "input", fmt, required=False)
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return Example(prompt=prompt, completion=_text_field(record, "output", fmt))
    if fmt == "prompt_completion":
        return Example(
            prompt=_text_field(record, "prompt", fmt),
            completion=_text_field(record, "completion", fmt),
        )
    return Example(prompt="", completion=_text_field(record, "text", fmt), plain=True)


def continuation_example(text_example: Example) -> Example | None:
    """A held-out text as a scoring question: its first half, to be continued by the words after."""
    words = text_example.completion.split()
    if len(words) < 2:
        return None
    cut = len(words) // 2
    return Example(
        prompt=" ".join(words[:cut]),
        completion=" " + " ".join(words[cut : cut + CONTINUATION_WORDS]),
        plain=True,
    )


def identity(example: Example) -> tuple:
    """What must not be shared by train and eval: the prompt (whatever the reply), or a whole text."""
    return (example.completion,) if example.plain else example.key


class UserDataTask(TwoWayScored):
    name = "jsonl"

    def __init__(self, data: DataConfig):
        self.data = data
        self.metric = "exact_match" if data.metric == "exact" else "token_f1"
        self.primary = "exact" if data.metric == "exact" else "partial"
        self.format: str | None = None if data.format in (None, "auto") else data.format
        self.dropped_overlap = 0  # training examples dropped because eval asks the same

    def _examples(self, records: list[Record]) -> list[Example]:
        if self.format is None:
            self.format = detect_format(records[0])
        return [to_example(record, self.format) for record in records]

    def load(self) -> tuple[list[Example], list[Example] | None]:
        """(train examples, given eval examples or None), every record checked."""
        train_records, eval_records = read_source(self.data.path)
        if self.data.eval_path:
            eval_records = read_source(self.data.eval_path, key="data.eval_path")[0]
        if not train_records:
            raise ConfigError(f"data.path={self.data.path}: no examples in it")
        train = self._examples(train_records)
        if eval_records is None:
            return train, None
        if not eval_records:
            raise ConfigError(
                f"data.eval_path={self.data.eval_path or self.data.path}: the eval split is empty"
            )
        return train, self._examples(eval_records)

    def split(
        self, num_train: int, num_eval: int, seed: int
    ) -> tuple[list[Example], list[Example]]:
        train, given_eval = self.load()
        rng = random.Random(seed)
        if given_eval is None:
            if len(train) < 2:
                raise ConfigError(
                    f"data.path={self.data.path}: one example cannot be split into train and eval"
                )
            fraction = self.data.eval_fraction or DEFAULT_EVAL_FRACTION
            # at least two: a validation and a test example
            held = min(num_eval, max(2, round(fraction * len(train))), len(train) - 1)
            order = list(range(len(train)))
            rng.shuffle(order)
            eval_set = [train[i] for i in sorted(order[:held])]
            train = [train[i] for i in order[held:]]
        else:
            eval_set = given_eval
            if len(eval_set) > num_eval:
                eval_set = [eval_set[i] for i in sorted(rng.sample(range(len(eval_set)), num_eval))]
            rng.shuffle(train)
        held_out = {identity(ex) for ex in eval_set}
        kept = [ex for ex in train if identity(ex) not in held_out]
        self.dropped_overlap = len(train) - len(kept)
        if self.dropped_overlap:
            log.warning("%d training examples dropped: eval asks the same", self.dropped_overlap)
        if not kept:
            raise ConfigError(
                f"data.path={self.data.path}: every training example is also an eval example"
            )
        if self.format == "text":
            eval_set = [q for q in map(continuation_example, eval_set) if q is not None]
            if not eval_set:
                raise ConfigError(
                    "data: no eval text has the two or more words needed to score a continuation"
                )
        return kept[:num_train], eval_set

    def score_exact(self, prediction: str, reference: str) -> float:
        return exact_match(prediction, reference)

    def score_partial(self, prediction: str, reference: str) -> float:
        return token_f1(prediction, reference)
