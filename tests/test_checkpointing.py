"""How often a trial saves: Young's interval, sqrt(2 x save time x MTBF), in the plan's steps."""

from __future__ import annotations

import math

import pytest

from ftsweep.config import ConfigError, compose
from ftsweep.planning.checkpointing import (
    checkpoint_bytes,
    checkpoint_every_steps,
    save_seconds,
    step_seconds,
    young_interval_s,
)

FULL_7B_ON_H100 = [
    "model=llama-2-7b",
    "method=full",
    "hardware=h100",
    "train.precision=bf16",
    "train.max_steps=100000",
]


def test_young_interval_balances_saves_against_lost_work():
    assert young_interval_s(50.0, 3600.0) == pytest.approx(math.sqrt(2 * 50 * 3600))
    # per unit of training: saves (C / T) + expected loss at a failure (T / 2M) is least at T*
    save, mtbf = 50.0, 3600.0
    best = young_interval_s(save, mtbf)

    def overhead(t: float) -> float:
        return save / t + t / (2 * mtbf)

    assert overhead(best) < overhead(best * 0.7) and overhead(best) < overhead(best * 1.4)


def test_a_full_save_writes_the_model_its_master_copy_and_moments_an_adapter_only_its_own():
    full = compose(["model=llama-2-7b", "method=full", "train.precision=bf16"])
    n = full.model.architecture.num_params
    assert checkpoint_bytes(full) == n * (2 + 4 + 8)  # ~94 GB at 7B
    lora = compose(["model=llama-2-7b", "method=lora", "method.lora_r=16"])
    assert checkpoint_bytes(lora) < checkpoint_bytes(full) / 100


def test_auto_saves_7b_full_fine_tuning_hourly_and_short_cpu_trials_never():
    # a 7B full save (~94 GB) takes minutes: Young's interval at a day's MTBF is about an hour
    cfg = compose(
        [
            "model=llama-2-7b",
            "method=full",
            "hardware=h100",
            "train.precision=bf16",
            "train.max_steps=100000",
        ]
    )
    steps = checkpoint_every_steps(cfg)
    assert steps is not None
    interval_h = steps * step_seconds(cfg) / 3600
    assert 0.5 < interval_h < 3
    # a flakier machine saves more often
    flaky = compose([*FULL_7B_ON_H100, "hardware.mtbf_hours=1"])
    assert checkpoint_every_steps(flaky) < steps
    # the default sweep's full trial (40 steps of SmolLM2-135M, a 1.6 GB save) is shorter than
    # one interval: no saves; its LoRA trial's adapter saves in a fraction of a second: it does
    full_cpu = compose(["sweep=lora_vs_full", "method=full"])
    assert save_seconds(full_cpu) > 1 and checkpoint_every_steps(full_cpu) is None
    lora_cpu = compose(["sweep=lora_vs_full", "method=lora"])
    assert save_seconds(lora_cpu) < 0.5
    assert 1 <= checkpoint_every_steps(lora_cpu) < lora_cpu.train.max_steps


def _overrides(cfg) -> list[str]:
    return [
        "model=llama-2-7b",
        "method=full",
        "hardware=h100",
        "train.precision=bf16",
        "train.max_steps=100000",
    ]


def test_a_number_or_null_is_taken_as_given_and_a_bad_value_is_named():
    assert checkpoint_every_steps(compose(["train.checkpoint_every=7"])) == 7
    assert checkpoint_every_steps(compose(["train.checkpoint_every=null"])) is None
    with pytest.raises(ConfigError, match="train.checkpoint_every"):
        compose(["train.checkpoint_every=sometimes"])
