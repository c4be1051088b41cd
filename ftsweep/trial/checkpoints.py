"""Resumable checkpoints of a trial: where they live, and which one a restart resumes from.

Every rank checkpoints as the HF Trainer does (DeepSpeed writes each rank's shard); rank 0
alone decides which checkpoint is complete and trusted, and tells the other ranks.

Trust: the trial's checkpoint folder is created 0700 inside RESULTS and must be the user's own
(`ftsweep.trust`); a checkpoint is resumed from only when its signed manifest
(`ftsweep.trial.manifest`) matches its files. One that does not (edited, planted, or written
without a manifest) is never loaded: it is renamed `refused-checkpoint-N` (kept for a look,
out of the Trainer's sight), a warning names it, and the trial resumes from the checkpoint
before it, or from step 0. A checkpoint folder that is not private fails the trial.

Where: in RESULTS by default (one disk, or one file system every node mounts). With `storage`
(an object store, `s3://...`), a trial writes its checkpoints into a scratch folder of its own
node (TMPDIR), and each one saved is copied to `STORAGE/checkpoints/EXPERIMENT/TRIAL` once
signed; a retry on any node copies them down before choosing one. Nothing a retry needs is
then left on the node that was lost.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ftsweep.config import Config
from ftsweep.tracking.store import experiment_name
from ftsweep.trial.checkpoint_store import delete_checkpoints, fetch_checkpoints

REFUSED_PREFIX = "refused-"


def checkpoint_dir(cfg: Config, trial_id: str) -> Path:
    """Where a trial's resumable checkpoints are written: stable across restarts of the trial
    (with `storage`, on this node only: see `checkpoint_uri`)."""
    root = Path(tempfile.gettempdir()) / "ftsweep-checkpoints" if cfg.storage else cfg.results_path
    return root / "checkpoints" / experiment_name(cfg) / trial_id


def state_location(cfg: Config, name: str) -> str:
    """Where Ray keeps the state called `name` (`ray`: the sweep's, `ray-train`: worker groups'):
    under `storage` where there is one, else a folder of RESULTS."""
    if cfg.storage:
        return f"{cfg.storage.rstrip('/')}/{name}"
    return str(cfg.results_path / name)


def checkpoint_uri(cfg: Config, trial_id: str) -> str | None:
    """Where a trial's checkpoints are kept beyond its node (`storage`); None without one."""
    if not cfg.storage:
        return None
    return f"{cfg.storage.rstrip('/')}/checkpoints/{experiment_name(cfg)}/{trial_id}"


def discard_checkpoints(cfg: Config, trial_id: str) -> None:
    """A trial that ended needs no checkpoint: remove its folder here and its kept copies."""
    shutil.rmtree(checkpoint_dir(cfg, trial_id), ignore_errors=True)
    uri = checkpoint_uri(cfg, trial_id)
    if uri:
        delete_checkpoints(uri)


def prepare_checkpoint_dir(cfg: Config, folder: Path) -> Path:
    """The checkpoint folder and those between it and RESULTS, created 0700 and checked."""
    from ftsweep.trust import private_dir

    root = cfg.results_path
    if not folder.is_relative_to(root):
        return private_dir(folder, "the trial's checkpoint folder")
    return private_dir(folder, "the trial's checkpoint folder", root=root)


def last_checkpoint(folder: Path | None) -> Path | None:
    """The newest checkpoint saved to the end and signed by this user, or None.

    The Trainer writes trainer_state.json last, so a worker killed mid-save leaves a newer folder
    without a readable one: it is removed, and the trial resumes from the checkpoint before it.
    A checkpoint whose manifest does not match is set aside, never loaded (module docstring).
    """
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import sort_checkpoints

    from ftsweep.trial.manifest import MANIFEST_NAME, CheckpointRefused, verify_manifest
    from ftsweep.trust import check_private, secret_key

    if folder is None or not folder.is_dir():
        return None
    check_private(folder, "the trial's checkpoint folder", follow=False)
    key = None  # read once there is a checkpoint to check
    # The Trainer's own ordering (by step, oldest first), the one it rotates checkpoints by.
    for path in map(Path, reversed(sort_checkpoints(str(folder)))):
        if not path.is_symlink() and path.is_dir() and not (path / MANIFEST_NAME).exists():
            try:
                json.loads((path / TRAINER_STATE_NAME).read_text())
            except (OSError, ValueError):
                shutil.rmtree(path, ignore_errors=True)  # half-written: the save was cut short
                continue
        key = key or secret_key()
        try:
            verify_manifest(path, key)
            return path
        except (CheckpointRefused, OSError) as exc:
            _set_aside(path, str(exc))
    return None


def _set_aside(path: Path, why: str) -> None:
    target = path.with_name(REFUSED_PREFIX + path.name)
    n = 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{REFUSED_PREFIX}{n}-{path.name}")
    os.rename(path, target)
    print(
        f"ftsweep: warning: checkpoint {path} refused, not loaded: {why}; moved to {target.name} "
        "(the trial resumes from an earlier checkpoint or from step 0)",
        file=sys.stderr,
        flush=True,
    )


def resume_point(
    folder: Path | None, rank: int, world: int, uri: str | None = None, local_rank: int = 0
) -> Path | None:
    """The checkpoint every rank resumes from: rank 0's choice (it alone removes half-written
    ones and sets refused ones aside), broadcast to the group by name (each rank's folder may
    be on a node of its own). With `uri`, one rank per node first copies the kept checkpoints
    down (`fetch_checkpoints`)."""
    if folder is not None and uri and local_rank == 0:
        fetch_checkpoints(folder, uri)  # into the private folder the Trainer's arguments made
    if world == 1:
        return last_checkpoint(folder)
    import torch.distributed as dist

    dist.barrier()  # every node has its copy before rank 0 looks
    chosen = [(last_checkpoint(folder) or Path()).name if rank == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return folder / chosen[0] if chosen[0] else None


def checkpoint_step(path: Path) -> str:
    """`checkpoint-20` -> "20"."""
    return path.name.split("-")[-1]
