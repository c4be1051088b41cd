"""DeepSpeed's shared-memory communication op, built once and loaded without a stale-lock hang.

On CPU, DeepSpeed JIT-compiles this op the first time a process starts its engine. torch guards
the build with a bare lock file and waits for it to disappear; a process killed while holding it
(a sweep stopped with SIGKILL, a CI job cancelled mid-build) leaves the file behind and every
later full fine-tuning trial then waits forever. ftsweep loads the op itself first, under an
flock that the kernel releases when its holder dies: whoever holds that flock knows no other
ftsweep process is building, so a torch lock file it finds is stale and can go. DeepSpeed then
reuses the module already loaded in the process instead of loading (and locking) again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ftsweep.models.builtin import cache_dir, trusted_cache_dir

OP_BUILDER = "ShareMemCommBuilder"


def extensions_dir() -> Path:
    """Where torch builds JIT extensions; ftsweep's own cache unless the user chose one."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def load_deepspeed_ops() -> str | None:
    """Build (first time) and load DeepSpeed's communication op in this process.

    Returns the op's name, or None where this accelerator has no such op to build.
    """
    root = extensions_dir()
    from deepspeed.accelerator import get_accelerator
    from deepspeed.ops import __compatible_ops__

    builder = get_accelerator().create_op_builder(OP_BUILDER)
    if builder is None or not __compatible_ops__.get(builder.NAME, False):
        return None
    # torch loads the shared object it builds here: a folder of the user's alone.
    from ftsweep.trust import private_dir

    if root.is_relative_to(cache_dir()):
        private_dir(root, "torch's extensions folder", root=trusted_cache_dir())
    else:
        private_dir(root, "torch's extensions folder (TORCH_EXTENSIONS_DIR)")
    with open(root / "ftsweep.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        (root / builder.name / "lock").unlink(missing_ok=True)
        builder.load(verbose=False)
    return builder.name
