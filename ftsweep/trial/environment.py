"""A trial's process state: os.environ for its run, and nothing of it left to the next trial."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def trial_environment(deepspeed: bool):
    """os.environ for one trial, restored as it was when the trial ends.

    A plain process (no launcher) gets the launcher variables DeepSpeed needs; without them it
    falls back to MPI discovery. A worker of a Ray Train group already has them, and keeps its
    own. Restoring matters in a process that runs trial after trial: transformers leaves
    ACCELERATE_USE_DEEPSPEED=true behind, which would send the next LoRA trial through DeepSpeed
    too, and a child process (a sweep started from a notebook or a test) would inherit a
    MASTER_PORT this process still listens on.
    """
    saved = dict(os.environ)
    if deepspeed:
        launcher = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
        }
        os.environ.update({k: v for k, v in launcher.items() if k not in os.environ})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def release_memory() -> None:
    """A sweep's worker process runs trial after trial: leave nothing of this one to the next."""
    import gc

    import torch
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # accelerate keeps its state per process: after a DeepSpeed trial, the next LoRA trial's
    # Trainer would otherwise run through DeepSpeed too.
    AcceleratorState._reset_state(reset_partial_state=True)
    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
