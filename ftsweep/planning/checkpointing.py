"""How often a trial saves a resumable checkpoint: what a save costs against what a lost
attempt costs.

A save writes what resuming needs (the trained weights and their optimizer states) and signs it
(`ftsweep.trial.manifest`: a SHA-256 of every file); a lost attempt loses, on average, half an
interval of training. Young's interval, sqrt(2 x save time x mean time between failures)
(Young 1974; Daly 2006), minimises the two together. `train.checkpoint_every=auto` (the default)
turns it into steps with the plan's step time; a trial shorter than one interval saves nothing.
"""

from __future__ import annotations

import math

from ftsweep.config import Config
from ftsweep.planning.memory import BYTES, adapter_params

# SHA-256 of the manifest, one core: 1.34 GB/s measured here (200 MB in memory).
HASH_BYTES_PER_S = 1.3e9
ADAM_MOMENT_BYTES = 8  # AdamW's two fp32 moments per trained parameter


def checkpoint_bytes(cfg: Config) -> float | None:
    """What one save writes: the trained weights and their optimizer states (adapters: only
    theirs; full fine-tuning: the model, its fp32 master copy in mixed precision, the moments).
    None when the model has no architecture numbers."""
    from ftsweep.planning.settings import adapter_of

    arch = cfg.model.architecture
    if arch is None:
        return None
    if cfg.method.is_adapter:
        # adapters train and save in fp32
        return adapter_params(arch, adapter_of(cfg)) * (4 + ADAM_MOMENT_BYTES)
    w = BYTES[cfg.train.precision]
    master = 4 if w < 4 else 0
    return arch.num_params * (w + master + ADAM_MOMENT_BYTES)


def save_seconds(cfg: Config) -> float | None:
    size = checkpoint_bytes(cfg)
    if size is None:
        return None
    # written to the trial's disk, then read back and hashed for its manifest
    return size / (cfg.hardware.disk_gb_s * 1e9) + size / HASH_BYTES_PER_S


def step_seconds(cfg: Config) -> float | None:
    """The plan's time for one optimizer step of this trial (uncalibrated), or None."""
    from ftsweep.planning.plan import DEFAULT_WORKLOAD, estimate_trial

    option = estimate_trial(cfg)
    if option is None or option.est_tokens_per_s <= 0:
        return None
    context = DEFAULT_WORKLOAD.context(cfg.train.seq_len)
    return cfg.train.batch_size * context * cfg.train.grad_accum / option.est_tokens_per_s


def young_interval_s(save_s: float, mtbf_s: float) -> float:
    # the interval that minimises save time + expected lost time per unit of training
    return math.sqrt(2 * save_s * mtbf_s)


def checkpoint_every_steps(cfg: Config) -> int | None:
    """`train.checkpoint_every` as the trial uses it: the configured steps, or for `auto`
    Young's interval in steps; None when the trial saves nothing (null, or a trial shorter than
    one interval)."""
    every = cfg.train.checkpoint_every
    if every != "auto":
        return every
    save_s, step_s = save_seconds(cfg), step_seconds(cfg)
    if save_s is None or step_s is None:
        return None  # nothing to size it by: a model without architecture numbers
    steps = max(1, round(young_interval_s(save_s, cfg.hardware.mtbf_hours * 3600) / step_s))
    return steps if steps < cfg.train.max_steps else None
