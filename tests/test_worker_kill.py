"""Chaos: SIGKILL of the process running one trial, mid-training. That trial is retried in its
own MLflow run and resumes from its last checkpoint; the other trials complete."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ftsweep.config import compose
from ftsweep.sweep.space import expand
from ftsweep.tracking.record import (
    TAG_ERROR,
    TAG_FAILURES,
    TAG_RESUMED_FROM,
    TAG_STOP_REASON,
    TAG_TRIAL_ID,
    TAG_WORKER,
)
from ftsweep.tracking.store import get_client
from ftsweep.trial.baseline import BASELINE_RUN_NAME

MAX_STEPS = 30
SWEEP = [
    "sweep=smoke",
    f"train.max_steps={MAX_STEPS}",
    "train.checkpoint_every=5",
    "train.log_every=1",
    "sweep.max_failures=1",
]


def _running_trial_past(db, step: int) -> tuple[str, int] | None:
    """(run id, worker pid) of a running trial that has logged a train loss past `step`."""
    if not db.exists():
        return None
    query = """
        SELECT r.run_uuid, t.value FROM runs r
        JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ?
        JOIN metrics m ON m.run_uuid = r.run_uuid AND m.key = 'train_loss'
        WHERE r.status = 'RUNNING' AND r.name != ?
        GROUP BY r.run_uuid HAVING max(m.step) > ?"""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute(query, (TAG_WORKER, BASELINE_RUN_NAME, step)).fetchone()
    except sqlite3.OperationalError:
        return None
    return (row[0], int(row[1].rsplit(":", 1)[1])) if row else None


def _sweep_past(args: list[str], results, step: int):
    """A sweep started in a subprocess, and (run id, worker pid) of its first running trial
    that got past `step`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftsweep.cli", "sweep", *args, f"results_dir={results}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 400
    victim = None
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        victim = _running_trial_past(results / "mlflow.db", step=step)
        time.sleep(0.5)
    if victim is None:
        proc.kill()
        pytest.fail(f"no trial got past step {step}:\n{proc.communicate()[0][-4000:]}")
    return proc, victim


@pytest.mark.slow
def test_a_trial_whose_worker_is_killed_resumes_and_the_others_complete(tmp_path, output_when_done):
    proc, (run_id, pid) = _sweep_past(SWEEP, tmp_path, step=7)  # a checkpoint at 5 exists
    assert pid != proc.pid  # the trial runs in a Ray worker, not in the driver
    os.kill(pid, signal.SIGKILL)
    output = output_when_done(proc, "the sweep after the kill")
    assert proc.returncode == 0, output[-4000:]

    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    trials = [r for r in runs if r.info.run_name != BASELINE_RUN_NAME]
    expected = {s.trial_id for s in expand(compose(SWEEP))}
    assert sorted(r.data.tags[TAG_TRIAL_ID] for r in trials) == sorted(expected)  # no duplicate
    for run in trials:
        outcome = (run.info.status, run.data.tags[TAG_STOP_REASON])
        assert outcome == ("FINISHED", "completed"), run.data.tags.get(TAG_ERROR)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, MAX_STEPS + 1)), run.info.run_name
    killed = client.get_run(run_id)
    assert killed.data.tags[TAG_FAILURES] == "1"
    # The killed attempt could not record its end: it is priced up to the last thing it logged.
    attempts = {m.step: m.value for m in client.get_metric_history(run_id, "attempt_wall_time_s")}
    assert sorted(attempts) == [0, 1] and attempts[0] > 0
    assert killed.data.metrics["lost_wall_time_s"] == pytest.approx(attempts[0])
    assert killed.data.metrics["wall_time_s"] == pytest.approx(sum(attempts.values()))
    assert int(killed.data.tags[TAG_RESUMED_FROM]) >= 5
    assert killed.data.tags[TAG_WORKER].rsplit(":", 1)[1] != str(pid)  # a new worker finished it
    assert [r.data.tags.get(TAG_FAILURES) for r in trials if r.info.run_id != run_id] == [None] * 2


GROUP_STEPS = 16
GROUP_SWEEP = [
    "sweep=zero3_workers",
    # the two-worker ZeRO-3 trial alone
    "sweep.space=[{method:full,params:{learning_rate:1.0e-4,zero_stage:3,num_workers:2}}]",
    "sweep.baseline=false",
    "sweep.max_failures=1",
    f"train.max_steps={GROUP_STEPS}",
    "train.checkpoint_every=4",
    "train.log_every=1",
]


def _ray_train_workers(driver_pid: int) -> list:
    """The Ray Train worker processes the sweep started (its raylet's children)."""
    import psutil

    workers = []
    for child in psutil.Process(driver_pid).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:
            continue
    return workers


@pytest.mark.slow
def test_a_worker_group_trial_whose_worker_is_killed_resumes_from_its_checkpoint(
    tmp_path, output_when_done
):
    # Past step 6: the checkpoint of step 4 was written by both ranks.
    proc, victim = _sweep_past(GROUP_SWEEP, tmp_path, step=6)
    workers = _ray_train_workers(proc.pid)
    assert len(workers) == 2, [w.cmdline() for w in workers]
    killed_pid = workers[-1].pid
    os.kill(killed_pid, signal.SIGKILL)
    output = output_when_done(proc, "the sweep after the kill")
    assert proc.returncode == 0, output[-4000:]

    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zero3_workers").experiment_id])
    tags = run.data.tags
    assert (run.info.status, tags[TAG_STOP_REASON]) == ("FINISHED", "completed"), tags.get(
        TAG_ERROR
    )
    assert run.info.run_id == victim[0]  # the retry reopened the trial's own run
    assert tags[TAG_FAILURES] == "1"
    assert int(tags[TAG_RESUMED_FROM]) >= 4
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, GROUP_STEPS + 1))  # as many steps as an unbroken trial
    assert run.data.metrics["num_workers"] == 2
