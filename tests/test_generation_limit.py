"""The generation limit: by default long enough for every held-out reference, recorded, and a
limit the user sets that cuts references is warned about."""

from __future__ import annotations

import logging

from ftsweep.data import generation_limit
from ftsweep.data.tasks import get_task, three_way_split
from ftsweep.models.builtin import load_tokenizer
from ftsweep.tracking.record import run_params


def _held_out(cfg):
    splits = three_way_split(get_task(cfg.data), cfg.data)
    return splits.validation + splits.test


def test_auto_limit_covers_the_longest_reference_of_hard_format(tiny_config):
    cfg = tiny_config(
        "data.difficulty=hard", "train.max_new_tokens=auto", "data.num_eval=64", "data.num_test=64"
    )
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    held_out = _held_out(cfg)
    longest = max(generation_limit.reply_tokens(tokenizer, ex) for ex in held_out)
    limit = generation_limit.max_new_tokens(cfg)
    assert longest + generation_limit.MIN_MARGIN_TOKENS <= limit <= 2 * longest
    assert generation_limit.references_cut(tokenizer, held_out, limit)[0] == 0
    # The limit the replies had is what the run records, not the word `auto`.
    assert run_params(cfg)["max_new_tokens"] == limit


def test_auto_limit_follows_the_task(tiny_config):
    limits = {
        difficulty: generation_limit.max_new_tokens(
            tiny_config(f"data.difficulty={difficulty}", "train.max_new_tokens=auto")
        )
        for difficulty in ("easy", "hard")
    }
    assert limits["easy"] < limits["hard"]


def test_a_set_limit_is_kept_and_warns_how_many_references_it_cuts(tiny_config, caplog):
    cfg = tiny_config("data.difficulty=hard", "train.max_new_tokens=48")
    assert generation_limit.max_new_tokens(cfg) == 48
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    held_out = _held_out(cfg)
    with caplog.at_level(logging.WARNING, logger="ftsweep.data.generation_limit"):
        cut = generation_limit.warn_if_cut(tokenizer, held_out, 48)
    assert cut == len(held_out)  # every hard reply is over 60 tokens
    assert f"cuts {cut} of {len(held_out)} held-out references" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ftsweep.data.generation_limit"):
        assert generation_limit.warn_if_cut(tokenizer, held_out, 200) == 0
    assert not caplog.text
