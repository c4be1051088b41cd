"""The local Ray instance a sweep starts: its trial workers run at normal priority."""

from __future__ import annotations

import os


def test_local_ray_runs_trial_workers_at_normal_priority(tiny_config, monkeypatch):
    import ray

    from ftsweep.sweep.resources import WORKER_NICENESS, start_ray

    monkeypatch.delenv(WORKER_NICENESS, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    try:
        assert start_ray(tiny_config()) == os.cpu_count()
        # Ray's default is nice 15: trials would yield to anything else on the machine.
        assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)
    finally:
        ray.shutdown()
