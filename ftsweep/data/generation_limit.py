"""How long a generated reply may be: long enough for every held-out reference.

A reply cut short scores as wrong (or, for partial credit, as missing what it had left to
say), so a limit shorter than the references measures the limit, not the model. By default
(`train.max_new_tokens: auto`) the limit is the longest reference of the validation and test
splits, in tokens with the end of turn, plus a margin for a reply worded a little longer; it
is recorded as the param `max_new_tokens`. A limit the user sets is kept, and a trial warns
how many references it cuts.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import TYPE_CHECKING

from ftsweep.data.tasks import Example

if TYPE_CHECKING:
    from ftsweep.config import Config

AUTO = "auto"
# A reply may be a quarter longer than the longest reference, and never less than 8 tokens more.
MARGIN_SHARE = 0.25
MIN_MARGIN_TOKENS = 8
_log = logging.getLogger(__name__)


def reply_tokens(tokenizer, example: Example) -> int:
    """Tokens the model must generate to give the reference reply and end its turn."""
    from ftsweep.data.tokenize import end_of_reply

    text = example.completion + end_of_reply(tokenizer, example.plain)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def limit_for(longest_reply: int) -> int:
    return longest_reply + max(MIN_MARGIN_TOKENS, math.ceil(MARGIN_SHARE * longest_reply))


def references_cut(tokenizer, examples: list[Example], limit: int) -> tuple[int, int]:
    """(how many references are longer than `limit` tokens, the longest one's length)."""
    lengths = [reply_tokens(tokenizer, example) for example in examples]
    return sum(length > limit for length in lengths), max(lengths, default=0)


def max_new_tokens(cfg: Config) -> int:
    """The generation limit a trial of this config uses: the configured number, or for `auto`
    the longest held-out reference plus a margin (computed once per model and data)."""
    configured = cfg.train.max_new_tokens
    if configured != AUTO:
        return configured
    data = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
    return _auto_limit(cfg.model.name_or_path, cfg.model.trust_remote_code, data)


@functools.cache
def _auto_limit(model: str, trust_remote_code: bool, data_json: str) -> int:
    from ftsweep.config import DataConfig
    from ftsweep.data.tasks import get_task, three_way_split
    from ftsweep.models.builtin import load_tokenizer

    tokenizer = load_tokenizer(model, trust_remote_code)
    data = DataConfig(**json.loads(data_json))
    splits = three_way_split(get_task(data), data)
    held_out = splits.validation + splits.test
    return limit_for(max(reply_tokens(tokenizer, example) for example in held_out))


def warn_if_cut(tokenizer, examples: list[Example], limit: int) -> int:
    """Warn when a set limit cuts references; returns how many it cuts."""
    cut, longest = references_cut(tokenizer, examples, limit)
    if cut:
        _log.warning(
            "train.max_new_tokens=%d cuts %d of %d held-out references (the longest is %d "
            "tokens): a cut reply scores as wrong; raise it or set train.max_new_tokens=auto",
            limit,
            cut,
            len(examples),
            longest,
        )
    return cut
