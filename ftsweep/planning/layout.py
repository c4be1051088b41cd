"""One rule for how a step's batch is laid out over devices, shared by the plan and the trainer.

`train.batch_size` is the global batch: the sequences of one optimizer step, split evenly
across the data-parallel devices (GPUs, or Ray Train workers on one machine). A layout whose
device count does not divide it is one the trainer refuses, so the plan never offers it.
"""

from __future__ import annotations

from ftsweep.config import ConfigError


def splits_evenly(batch_size: int, devices: int) -> bool:
    return devices >= 1 and batch_size % devices == 0


def per_device_batch(batch_size: int, devices: int) -> int:
    """Sequences each device trains on per step; a ConfigError when they do not split evenly."""
    if devices < 1:
        raise ConfigError(f"num_workers={devices}: at least one worker is needed")
    if not splits_evenly(batch_size, devices):
        raise ConfigError(
            f"train.batch_size={batch_size} is the sequences per optimizer step and must "
            f"split evenly across {devices} workers; choose a multiple of {devices}"
        )
    return batch_size // devices
