"""Resumable checkpoints of a trial: where they live, and which one a restart resumes from.

Every rank checkpoints as the HF Trainer does (DeepSpeed writes each rank's shard); rank 0
alone decides which checkpoint is complete, and tells the other ranks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ftsweep.config import Config
from ftsweep.tracking.store import experiment_name


def checkpoint_dir(cfg: Config, trial_id: str) -> Path:
    """Where a trial's resumable checkpoints live: stable across restarts of the trial."""
    return cfg.results_path / "checkpoints" / experiment_name(cfg) / trial_id


def last_checkpoint(folder: Path | None) -> Path | None:
    """The newest checkpoint saved to the end, or None.

    The Trainer writes trainer_state.json last, so a worker killed mid-save leaves a newer folder
    without a readable one: it is removed, and the trial resumes from the checkpoint before it.
    """
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import sort_checkpoints

    if folder is None or not folder.is_dir():
        return None
    # The Trainer's own ordering (by step, oldest first), the one it rotates checkpoints by.
    for path in map(Path, reversed(sort_checkpoints(str(folder)))):
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text())
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return None


def resume_point(folder: Path | None, rank: int, world: int) -> Path | None:
    """The checkpoint every rank resumes from: rank 0's choice (it alone removes half-written
    ones), broadcast to the group."""
    if world == 1:
        return last_checkpoint(folder)
    import torch.distributed as dist

    chosen = [str(last_checkpoint(folder) or "") if rank == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0]) if chosen[0] else None


def checkpoint_step(path: Path) -> str:
    """`checkpoint-20` -> "20"."""
    return path.name.split("-")[-1]
