"""Shared fixtures: the real config, shrunk to the tiny random model and a temporary store."""

from __future__ import annotations

import os

import pytest

# Tests run on CPU; DeepSpeed otherwise probes for accelerators it cannot use here.
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that turn the default config into a seconds-long trial."""
    return [
        "model=tiny-llama",
        f"results_dir={tmp_path}",
        "train.max_steps=2",
        "train.log_every=1",
        "train.batch_size=4",
        "train.max_new_tokens=8",
        "data.num_train=16",
        "data.num_eval=4",
    ]


@pytest.fixture
def tiny_config(tiny_overrides):
    from ftsweep.config import compose

    def make(*extra: str):
        return compose([*tiny_overrides, *extra])

    return make
