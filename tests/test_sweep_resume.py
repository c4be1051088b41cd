"""Crash safety end to end: a sweep killed mid-way resumes without losing or duplicating runs."""

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
from ftsweep.tracking.record import TAG_STOP_REASON, TAG_TRIAL_ID
from ftsweep.tracking.store import get_client
from ftsweep.trial.baseline import BASELINE_RUN_NAME, baseline_trial_id

SMOKE = ["sweep=smoke"]


def _sweep(results, *extra, **popen):
    cmd = [sys.executable, "-m", "ftsweep.cli", "sweep", *SMOKE, f"results_dir={results}", *extra]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def _runs(results):
    db = results / "mlflow.db"
    if not db.exists():
        return []
    client = get_client(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("smoke")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _count_finished(db) -> int:
    # Plain sqlite while the sweep may still be creating the store: MLflow's client would
    # try to create (migrate) it too.
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(
                "SELECT count(*) FROM runs WHERE status = 'FINISHED' AND name != ?",
                (BASELINE_RUN_NAME,),
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path, output_when_done):
    expected = {s.trial_id for s in expand(compose(SMOKE))} | {baseline_trial_id(compose(SMOKE))}
    # The driver and the Ray processes it starts share one process group: kill them all.
    proc = _sweep(tmp_path, start_new_session=True)
    deadline = time.monotonic() + 300
    first_finished = None
    while time.monotonic() < deadline and proc.poll() is None:
        if _count_finished(tmp_path / "mlflow.db"):
            first_finished = next(
                r
                for r in _runs(tmp_path)
                if r.info.status == "FINISHED" and r.info.run_name != BASELINE_RUN_NAME
            )
            break
        time.sleep(1)
    assert first_finished is not None, "no trial finished before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    before = _runs(tmp_path)
    assert len(before) < len(expected) or any(r.info.status == "RUNNING" for r in before)

    resumed = _sweep(tmp_path)
    output = output_when_done(resumed, "the resumed sweep")
    assert resumed.returncode == 0, output[-4000:]
    assert "resuming sweep state" in output

    runs = _runs(tmp_path)
    trial_ids = [r.data.tags[TAG_TRIAL_ID] for r in runs]
    assert sorted(trial_ids) == sorted(expected), "a trial was lost or duplicated"
    assert all(r.info.status == "FINISHED" for r in runs), [
        (r.info.run_name, r.info.status) for r in runs
    ]
    assert all(r.data.tags[TAG_STOP_REASON] == "completed" for r in runs)
    # The trial finished before the kill kept its run and was not trained again.
    same = next(
        r for r in runs if r.data.tags[TAG_TRIAL_ID] == first_finished.data.tags[TAG_TRIAL_ID]
    )
    assert same.info.run_id == first_finished.info.run_id
    assert same.data.metrics["wall_time_s"] == first_finished.data.metrics["wall_time_s"]
    for run in runs:
        if run.data.params["method"] == "full":
            assert "lora_r" not in run.data.params


@pytest.mark.slow
def test_asha_stops_poor_trials_early_and_tags_them(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftsweep.cli",
            "sweep",
            "sweep=lr_scan",
            "sweep.algorithm=optuna",
            "sweep.scheduler=asha",
            f"results_dir={tmp_path}",
            "model=tiny-llama",
            "train.max_steps=9",
            "train.eval_every=3",
            "train.log_every=3",
            "sweep.num_samples=5",
            "sweep.asha.grace_period_tokens=300",
            "data.num_eval=4",
            "data.num_test=4",
            "train.max_new_tokens=8",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lr_scan")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name == BASELINE_RUN_NAME for r in runs) == [False] * 5 + [True]
    runs = [r for r in runs if r.info.run_name != BASELINE_RUN_NAME]
    reasons = [r.data.tags[TAG_STOP_REASON] for r in runs]
    assert "early_stopped" in reasons, reasons
    for run in runs:
        assert run.info.status == "FINISHED"
        if run.data.tags[TAG_STOP_REASON] == "early_stopped":
            # Stopped at a rung: an eval loss by tokens, no final quality.
            assert "quality" not in run.data.metrics
            assert client.get_metric_history(run.info.run_id, "eval_loss")
        # every run that used compute is priced, an early stop too
        assert run.data.metrics["cost_usd"] > 0 and run.data.metrics["wall_time_s"] > 0
        if run.data.params["method"] == "full":
            assert not {"lora_r", "lora_alpha", "target_modules"} & set(run.data.params)
