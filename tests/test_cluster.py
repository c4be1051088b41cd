"""A real multi-node Ray cluster on this machine (`ftsweep.ops.local_cluster`): a head and two
worker nodes, each a `ray start` of its own in a network namespace of its own, with token
authentication; an MLflow tracking server over PostgreSQL; trial state in an S3 server
(`storage=s3://...`). Sweeps are launched by a client process with RAY_ADDRESS, beside the head.

Needs root (network namespaces) and PostgreSQL's server binaries; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ftsweep.config import compose
from ftsweep.ops.local_cluster import LocalCluster, Probe, namespaces_available
from ftsweep.ops.postgres import postgres_bin_dir
from ftsweep.sweep.space import expand
from ftsweep.tracking.record import (
    METRICS,
    TAG_ERROR,
    TAG_FAILURES,
    TAG_NODE,
    TAG_NODES,
    TAG_RESUMED_FROM,
    TAG_STOP_REASON,
    TAG_TRIAL_ID,
    TAG_WORKER_NODES,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not namespaces_available(), reason="needs root and `ip netns` (a node per namespace)"
    ),
    pytest.mark.skipif(postgres_bin_dir() is None, reason="needs PostgreSQL's server binaries"),
]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="ftsw-c-", dir="/tmp"))  # short: Ray's socket paths
    cluster = LocalCluster(root, workers=2, worker_cpus=1, head_cpus=0)
    try:
        cluster.start()
        probe = Probe(cluster)
        yield cluster, probe
        probe.close()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class Sweep:
    """`ftsweep sweep` run by a client beside the head, as a user on the cluster runs it."""

    def __init__(self, cluster: LocalCluster, args: list[str]):
        self.cluster = cluster
        self.results = cluster.root / "client" / "results"
        self.args = [
            *args,
            f"results_dir={self.results}",
            f"tracking.uri={cluster.tracking_uri}",
            f"storage={cluster.storage_uri}",
        ]
        self.output = ""
        self.start()

    def start(self) -> None:
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            self.cluster.client_command([sys.executable, "-m", "ftsweep.cli", "sweep", *self.args]),
            env=self.cluster.client_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def kill(self) -> None:
        """SIGKILL the driver's whole process group (kill -9, no time to save anything)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.output += self.read_log()

    def wait(self, timeout_s: float) -> str:
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the sweep did not finish in {timeout_s:g} s:\n{self.output[-4000:]}")
        self.output += self.read_log()
        assert self.process.returncode == 0, self.output[-4000:]
        return self.output


def wait_for(probe: Probe, experiment: str, sweep: Sweep, what: str, test, timeout_s=300):
    """Poll the sweep's runs until `test(runs)` returns something; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = test(probe.runs(experiment))
        if found:
            return found
        if sweep.process.poll() is not None:
            break
        time.sleep(0.5)
    sweep.kill()
    pytest.fail(f"never saw {what}:\n{sweep.output[-4000:]}")


def running(runs: list[dict], past_step: int = 0) -> list[dict]:
    return [
        r
        for r in runs
        if r["status"] == "RUNNING"
        and TAG_NODE in r["tags"]
        and max(r["train_loss_steps"], default=0) > past_step
    ]


STEPS = 20
SMOKE = [
    "sweep=smoke",
    "sweep.baseline=false",
    "sweep.max_concurrent_trials=2",  # one trial per worker node (1 CPU each)
    "sweep.max_failures=1",
    f"train.max_steps={STEPS}",
    "train.checkpoint_every=5",
    "train.log_every=1",
]


def test_smoke_sweep_on_two_nodes_survives_a_tracking_restart_and_a_lost_node(cluster):
    cluster, probe = cluster
    sweep = Sweep(cluster, SMOKE)

    # Two trials log from two nodes: the tracking server crashes and comes back.
    def two_nodes_logging(runs):
        live = running(runs, past_step=1)
        return live if len({r["tags"][TAG_NODE] for r in live}) == 2 else None

    logging = wait_for(probe, "smoke", sweep, "two trials logging on two nodes", two_nodes_logging)
    cluster.kill_tracking_server()
    time.sleep(3)  # the trials' writes fail and are retried meanwhile
    cluster.start_tracking_server()

    # A worker node is lost while its trial is past its first checkpoint (step 5).
    (victim, *_) = wait_for(
        probe, "smoke", sweep, "a trial past its checkpoint", lambda runs: running(runs, 6)
    )
    lost = cluster.node_at(victim["tags"][TAG_NODE])
    assert lost is not None and lost is not cluster.head
    killed = lost.kill()
    assert len(killed) >= 3  # ray start, its raylet, the trial's worker (and Ray's agents)
    shutil.rmtree(lost.scratch)  # its disk goes with it: nothing the retry needs was there
    cluster.add_node()  # a replacement joins, as an autoscaler would bring one
    sweep.wait(600)

    runs = probe.runs("smoke")
    expected = {s.trial_id for s in expand(compose(SMOKE))}
    assert sorted(r["tags"][TAG_TRIAL_ID] for r in runs) == sorted(expected)  # one run each
    for run in runs:
        tags = run["tags"]
        assert (run["status"], tags[TAG_STOP_REASON]) == ("FINISHED", "completed"), tags.get(
            TAG_ERROR
        )
        # Every step logged once, through the restart and the lost node: no metric lost.
        assert run["train_loss_steps"] == list(range(1, STEPS + 1)), run["name"]
        assert cluster.node_at(tags[TAG_NODE]) not in (None, cluster.head)
    assert len({r["tags"][TAG_NODE] for r in runs}) >= 2  # trials ran on more than one node
    assert {r["run_id"] for r in logging} <= {r["run_id"] for r in runs}

    (retried,) = [r for r in runs if r["run_id"] == victim["run_id"]]
    tags = retried["tags"]
    assert tags[TAG_FAILURES] == "1"
    assert int(tags[TAG_RESUMED_FROM]) >= 5  # from the checkpoint in the object store
    first, second = tags[TAG_NODES].split(",")
    assert first == victim["tags"][TAG_NODE] and cluster.node_at(second) is not lost
    assert [r["tags"].get(TAG_FAILURES) for r in runs if r is not retried] == [None, None]

    # Trial state lives in the object store: Ray's sweep state and the runs' artifacts are
    # there, no checkpoint is left once every trial finished, and the client kept nothing.
    stored = probe.ls(cluster.storage_uri)
    assert any(path.endswith("/tuner.pkl") for path in stored)
    assert not [path for path in stored if "/checkpoints/" in path]
    artifacts = probe.ls("s3://ftsweep/mlartifacts")
    assert sum(path.endswith("adapter_model.safetensors") for path in artifacts) == 2  # LoRA, QLoRA
    assert not (sweep.results / "ray").exists() and not (sweep.results / "checkpoints").exists()
    print(
        f"cluster: {len(cluster.nodes)} nodes started, 1 lost; {len(runs)} trials on "
        f"{len({r['tags'][TAG_NODE] for r in runs})} nodes; train_loss steps "
        f"{sum(len(r['train_loss_steps']) for r in runs)} found of {len(runs) * STEPS} expected"
    )


GROUP_STEPS = 12
GROUP_SWEEP = [
    "sweep=zero3_workers",
    # the two-worker ZeRO-3 trial alone, one worker per node (each node has one CPU, too)
    "sweep.space=[{method:full,params:{learning_rate:1.0e-4,zero_stage:3,num_workers:2}}]",
    "hardware.worker_placement=strict_spread",
    "sweep.baseline=false",
    "sweep.max_failures=1",
    f"train.max_steps={GROUP_STEPS}",
    "train.checkpoint_every=4",
    "train.log_every=1",
]


def test_zero3_group_across_two_nodes_resumes_after_the_driver_is_killed(cluster):
    cluster, probe = cluster
    sweep = Sweep(cluster, GROUP_SWEEP)
    # Past step 6: the checkpoint of step 4 is in the object store, each node's shards in it.
    (victim,) = wait_for(
        probe, "zero3_workers", sweep, "the group past its checkpoint", lambda r: running(r, 6)
    )
    sweep.kill()
    shutil.rmtree(sweep.results)  # the client's own folder: nothing the sweep needs is there
    sweep.start()  # the same command again, from the client
    output = sweep.wait(600)
    assert "resuming sweep state from s3://" in output

    (run,) = probe.runs("zero3_workers")
    tags, metrics = run["tags"], run["metrics"]
    assert (run["status"], tags[TAG_STOP_REASON]) == ("FINISHED", "completed"), tags.get(TAG_ERROR)
    assert run["run_id"] == victim["run_id"]  # the trial's own run, reopened
    assert tags[TAG_FAILURES] == "1" and int(tags[TAG_RESUMED_FROM]) >= 4
    assert run["train_loss_steps"] == list(range(1, GROUP_STEPS + 1))
    # Its two workers ran on two nodes, and it recorded what a one-node group records.
    workers = tags[TAG_WORKER_NODES].split(",")
    assert len(workers) == 2 and len({cluster.node_at(w).name for w in workers}) == 2
    assert metrics["num_workers"] == 2 and metrics["devices"] == 2
    assert [key for key in METRICS if key not in metrics] == []
    assert not [p for p in probe.ls(cluster.storage_uri) if "/checkpoints/" in p]
    print(f"zero3: workers on {workers}, resumed from step {tags[TAG_RESUMED_FROM]} of the store")
