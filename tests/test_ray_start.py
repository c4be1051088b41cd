"""The Ray instance a sweep runs on: its own local one, unless RAY_ADDRESS names a cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ftsweep.ops.local_cluster import (
    RAY_PORT,
    Namespace,
    RayNode,
    base_env,
    free_port,
    make_token,
    namespaces_available,
)


def test_local_ray_runs_trial_workers_at_normal_priority(tiny_config, monkeypatch):
    import ray

    from ftsweep.sweep.resources import WORKER_NICENESS, start_ray
    from ftsweep.tracking.record import ray_node

    monkeypatch.delenv(WORKER_NICENESS, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    try:
        assert start_ray(tiny_config()) == os.cpu_count()
        # Ray's default is nice 15: trials would yield to anything else on the machine.
        assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)
        # What a trial's run is tagged with (ftsweep.node): the node's address and id.
        (node,) = ray.nodes()
        expected = f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}"
        assert ray.get(ray.remote(ray_node).remote()) == expected
    finally:
        ray.shutdown()


# start_ray in a process of its own (beside the head, in its namespace): what it joined.
PROBE = """
import json, sys
import ray
from ftsweep.config import compose
from ftsweep.sweep.resources import start_ray

cpus = start_ray(compose(["model=tiny-llama", "results_dir=" + sys.argv[1]]))
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "cpus": cpus}))
ray.shutdown()
"""


@pytest.fixture(scope="module")
def running_cluster():
    """A one-node Ray cluster started with `ray start --head` (1 CPU, token authentication),
    where ray.init() finds it: in a network namespace of its own where this process may make
    one (all traffic on that namespace's loopback), else on this machine's network."""
    root = Path(tempfile.mkdtemp(prefix="ftsw-ray-", dir="/tmp"))  # short: Ray's socket paths
    namespace = Namespace(None)
    if namespaces_available():
        namespace = Namespace.create(f"ftsw{os.getpid()}-ray")
    env = base_env(make_token(root / "token"))
    port = RAY_PORT if namespace.name else free_port()
    head = RayNode("head", root / "head", namespace, env, num_cpus=1, port=port)
    try:
        head.start().wait_started()
        yield head, env, root
    finally:
        head.stop()
        namespace.delete()
        shutil.rmtree(root, ignore_errors=True)


def _start_ray_beside(head: RayNode, env: dict, root: Path, **extra: str) -> dict:
    # RAY_TMPDIR: where Ray looks for the cluster `ray start` last started (ray_current_cluster),
    # here the head's own folder, as /tmp/ray is on a machine where someone ran `ray start`.
    env = env | {"RAY_TMPDIR": str(head.scratch), **extra}
    result = subprocess.run(
        head.namespace.wrap([sys.executable, "-c", PROBE, str(root / "results")]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_without_ray_address_a_sweep_starts_its_own_ray_beside_a_running_cluster(
    running_cluster,
):
    head, env, root = running_cluster
    # ray.init() alone would join the head and refuse num_cpus.
    found = _start_ray_beside(head, env, root)
    assert not found["gcs"].endswith(f":{head.port}")
    assert found["cpus"] == os.cpu_count()  # its own instance, sized to this machine


@pytest.mark.slow
def test_ray_address_auto_joins_the_running_cluster(running_cluster):
    head, env, root = running_cluster
    found = _start_ray_beside(head, env, root, RAY_ADDRESS="auto")
    assert found["gcs"].endswith(f":{head.port}")
    assert found["cpus"] == 1  # the head's CPUs, not this machine's
