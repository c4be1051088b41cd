"""What names a trial: a stable id from everything that defines it, and a readable run name."""

from __future__ import annotations

import hashlib
import json

from ftsweep.config import Config
from ftsweep.tracking.record import run_params


def stable_id(prefix: str, identity: dict) -> str:
    """`prefix-<hash>`: the same identity always gives the same id, in every process."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:10]}"


def trial_id_for(cfg: Config) -> str:
    """Stable id from what defines the trial: the same config always gives the same id."""
    return stable_id(cfg.method.name, {"sweep": cfg.sweep.name, **run_params(cfg, resolve=False)})


def run_name_for(cfg: Config) -> str:
    """`lora r16 a32 all-linear lr1e-03 s0`: the method, its knobs, learning rate and seed."""
    m = cfg.method
    return " ".join(
        [m.name, *m.spec.run_name_parts(m), f"lr{m.learning_rate:.0e}", f"s{cfg.train.seed}"]
    )
