"""What `ftsweep auto` reads off the data before designing anything: how many examples there
are, how many tokens each trains on (what ASHA's rungs count), how long the held-out replies
are (what generating them costs), and what kind of task it is, where that is known."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ftsweep.config import Config

# What each built-in task asks for, in the guide's terms (ranks and methods depend on it).
TASK_KINDS = {
    "format": "style",  # rewrite into a fixed format: the guide's "r=8 suffices for style"
    "domain": "classification",  # pick labels: little new knowledge
    "knowledge": "knowledge",  # new facts: the guide's case for higher ranks and full fine-tuning
    "jsonl": "unknown",  # the user's own data: nothing is assumed
}
# Counts tokens where the model's own tokenizer cannot be read without the network.
STAND_IN_TOKENIZER = "builtin:smollm2-135m"
# Tokens no example needs to fit in when measuring it whole.
WHOLE = 32768


@dataclass(frozen=True)
class DataProfile:
    task: str
    kind: str
    difficulty: str | None
    train_examples: int
    validation_examples: int
    test_examples: int
    mean_tokens: float  # per training example, prompt and reply, cut at train.seq_len
    longest_tokens: int  # the longest training example, uncut
    cut_examples: int  # training examples longer than train.seq_len
    longest_reply: int  # the longest held-out reference, end of turn included
    tokenizer: str  # whose tokenizer counted them

    @property
    def held_out(self) -> int:
        return self.validation_examples + self.test_examples

    def tokens_per_step(self, cfg: Config) -> float:
        # sequences per optimizer step x the mean real (unpadded) tokens of one
        return cfg.train.batch_size * cfg.train.grad_accum * self.mean_tokens

    def epochs(self, cfg: Config) -> float:
        steps = cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum
        return steps / self.train_examples

    def lines(self, cfg: Config) -> list[str]:
        level = f" ({self.difficulty})" if self.difficulty else ""
        out = [
            f"data: {self.task}{level}, a {self.kind} task: {self.train_examples} training examples "
            f"({self.epochs(cfg):.1f} passes in {cfg.train.max_steps} steps of "
            f"{cfg.train.batch_size * cfg.train.grad_accum}), {self.validation_examples} validation "
            f"+ {self.test_examples} test",
            f"data: {self.mean_tokens:.0f} tokens per example on average (longest "
            f"{self.longest_tokens}), replies up to {self.longest_reply} tokens; counted with "
            f"{self.tokenizer}",
        ]
        if self.cut_examples:
            out.append(
                f"data: {self.cut_examples} training examples are longer than train.seq_len="
                f"{cfg.train.seq_len} and are cut (raise it if their replies matter)"
            )
        return out


def _tokenizer_for(cfg: Config):
    """The model's own tokenizer where it can be read here (built-in or a local folder), else
    SmolLM2's as a stand-in (a hub id is not downloaded to count tokens)."""
    from ftsweep.models.builtin import load_tokenizer

    path = cfg.model.name_or_path
    if path.startswith("builtin:") or Path(path).expanduser().is_dir():
        return load_tokenizer(path, cfg.model.trust_remote_code), cfg.model.name
    return load_tokenizer(STAND_IN_TOKENIZER), f"{STAND_IN_TOKENIZER} as a stand-in for {path}"


def profile_data(cfg: Config) -> DataProfile:
    """The data as training will see it: the task's splits, tokenized with the model's template."""
    from ftsweep.data.generation_limit import reply_tokens
    from ftsweep.data.tasks import get_task, three_way_split
    from ftsweep.data.tokenize import tokenize_example

    splits = three_way_split(get_task(cfg.data), cfg.data)
    tokenizer, counted_with = _tokenizer_for(cfg)
    whole = [len(tokenize_example(tokenizer, ex, WHOLE)["input_ids"]) for ex in splits.train]
    seq_len = cfg.train.seq_len
    held_out = splits.validation + splits.test
    return DataProfile(
        task=cfg.data.task,
        kind=TASK_KINDS.get(cfg.data.task, "unknown"),
        difficulty=cfg.data.difficulty if cfg.data.task != "jsonl" else None,
        train_examples=len(splits.train),
        validation_examples=len(splits.validation),
        test_examples=len(splits.test),
        mean_tokens=statistics.fmean(min(n, seq_len) for n in whole) if whole else 0.0,
        longest_tokens=max(whole, default=0),
        cut_examples=sum(n > seq_len for n in whole),
        longest_reply=max((reply_tokens(tokenizer, ex) for ex in held_out), default=0),
        tokenizer=counted_with,
    )


def generation_limit(cfg: Config, profile: DataProfile) -> int:
    """The replies' token limit a trial will use (train.max_new_tokens, `auto` resolved)."""
    from ftsweep.data.generation_limit import AUTO, limit_for

    configured = cfg.train.max_new_tokens
    return limit_for(profile.longest_reply) if configured == AUTO else int(configured)


def decode_steps(cfg: Config, profile: DataProfile) -> int:
    # batches of held-out prompts x the tokens each batch generates (until its longest stops)
    return math.ceil(profile.held_out / cfg.train.eval_batch_size) * generation_limit(cfg, profile)
