"""DeepSpeed's CPU op loads even where a killed process left torch's build lock behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ftsweep.trial.deepspeed_ops import extensions_dir, load_deepspeed_ops

LOAD = "from ftsweep.trial.deepspeed_ops import load_deepspeed_ops; print(load_deepspeed_ops())"


def test_a_stale_build_lock_does_not_hang_the_next_load(tmp_path):
    op = load_deepspeed_ops()  # built once (by `ftsweep prepare`), then copied: no recompiling
    assert op == "deepspeed_shm_comm"
    shutil.copytree(extensions_dir() / op, tmp_path / op)
    stale = tmp_path / op / "lock"
    stale.touch()  # what a process SIGKILLed inside torch's build leaves behind

    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "DS_ACCELERATOR": "cpu"}
    # torch alone waits on that file forever; the timeout turns a hang into a failure.
    done = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == op
    assert not stale.exists()
    assert (tmp_path / "ftsweep.lock").exists()
