"""MLflow writes that survive a busy store: retries, no duplicates, many processes on one SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
from mlflow.exceptions import MlflowException

from ftsweep.tracking.record import TAG_TRIAL_ID, TrialRun, run_params
from ftsweep.tracking.retry import TrackingUnavailable, is_transient, retrying
from ftsweep.tracking.store import get_client, tracking_uri


@pytest.mark.parametrize(
    "error",
    [
        MlflowException("(sqlite3.OperationalError) database is locked"),
        MlflowException(
            "API request to endpoint /api/2.0/mlflow/runs/log-batch failed with error code 503 != 200"
        ),
        MlflowException(
            "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed with exception "
            "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded (Connection refused)"
        ),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_busy_or_restarting_stores_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        MlflowException("Experiment 'x' already exists."),
        MlflowException("Changing param values is not allowed."),
        MlflowException(
            'connection failed: connection to server at "127.0.0.1", port 5433 failed: '
            'FATAL:  password authentication failed for user "ftsweep"'
        ),
        ValueError("bad value"),
    ],
)
def test_real_errors_are_not_retried(error):
    assert not is_transient(error)
    calls = []

    def fail():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        retrying(fail, "testing", "sqlite:///x.db", budget_s=5)
    assert len(calls) == 1


def test_retry_until_the_store_answers():
    calls = []

    def busy_twice():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return "done"

    assert retrying(busy_twice, "testing", "sqlite:///x.db", budget_s=10) == "done"
    assert len(calls) == 3


def test_retry_gives_up_after_its_budget_with_a_clear_redacted_error():
    def refused():
        raise MlflowException(
            "API request to http://alice:s3cret@127.0.0.1:1/api failed: Connection refused"
        )

    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as info:
        retrying(refused, "logging metrics", "http://alice:s3cret@127.0.0.1:1", budget_s=0.5)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "stayed unavailable" in message and "logging metrics" in message
    assert "s3cret" not in message
    assert isinstance(info.value, ConnectionError)  # the sweep retries the trial, not the run


def _fail_once_after(method, error):
    """Wraps a client method: its first call takes effect, then reports a dropped connection."""
    state = {"failed": False}

    def wrapper(*args, **kwargs):
        result = method(*args, **kwargs)
        if not state["failed"]:
            state["failed"] = True
            raise error
        return result

    return wrapper


def test_a_batch_retried_after_a_lost_reply_is_not_logged_twice(tiny_config, monkeypatch):
    cfg = tiny_config("sweep.name=lost-reply")
    run = TrialRun(cfg, "trial-a", "run a", "test")
    raw = run.client.raw
    monkeypatch.setattr(
        raw, "log_batch", _fail_once_after(raw.log_batch, ConnectionResetError("reset"))
    )
    run.log_metrics({"train_loss": 1.5, "eval_loss": 2.5}, step=1)
    run.log_metrics({"train_loss": 1.0}, step=2)
    client = get_client(tracking_uri(cfg))
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "train_loss")] == [
        (1, 1.5),
        (2, 1.0),
    ]
    assert len(client.get_metric_history(run.run_id, "eval_loss")) == 1


def test_a_run_created_before_a_lost_reply_is_not_created_twice(tiny_config, monkeypatch):
    cfg = tiny_config("sweep.name=lost-create")
    client = get_client(tracking_uri(cfg))
    raw = client.raw
    monkeypatch.setattr(
        raw, "create_run", _fail_once_after(raw.create_run, ConnectionResetError("reset"))
    )
    monkeypatch.setattr("ftsweep.tracking.record.get_client", lambda uri: client)
    run = TrialRun(cfg, "trial-b", "run b", "test")
    experiment = client.get_experiment_by_name("lost-create")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run.run_id]
    assert runs[0].data.tags[TAG_TRIAL_ID] == "trial-b"
    assert set(runs[0].data.params) == set(run_params(cfg))


# --- many processes on one new SQLite store --------------------------------------------------

PROCESSES = 8
STEPS = 60
KEYS = ("train_loss", "eval_loss", "grad_norm", "tokens")  # 4 x 60 = 240 metric rows a process

WORKER = """
import sys, time
from pathlib import Path

from ftsweep.config import compose
from ftsweep.tracking.record import TrialRun

results, index = sys.argv[1], int(sys.argv[2])
cfg = compose(["model=tiny-llama", f"results_dir={results}", "sweep.name=crowd", f"train.seed={index}"])
keys = sys.argv[3].split(",")
steps = int(sys.argv[4])
# Everything is imported: say so, then start with the others at once.
Path(results, f"ready-{index}").touch()
while not Path(results, "go").exists():
    time.sleep(0.01)
run = TrialRun(cfg, f"trial-{index}", f"run {index}", "crowd")
for step in range(1, steps + 1):
    run.log_metrics({k: index + step / 1000 for k in keys}, step=step)
run.finish("FINISHED", "completed")
print("logged", index)
"""


@pytest.mark.slow
def test_processes_starting_at_once_on_an_empty_store_lose_nothing(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    assert not (results / "mlflow.db").exists()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(results), str(i), ",".join(KEYS), str(STEPS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 300
        while len(list(results.glob("ready-*"))) < PROCESSES:
            assert all(p.poll() is None for p in procs), "a worker died while importing"
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.05)
        (results / "go").touch()
        outputs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "database is locked" not in out.lower(), out
        assert "Traceback" not in out, out

    db = sqlite3.connect(results / "mlflow.db")
    experiments = db.execute(
        "select experiment_id from experiments where name = 'crowd'"
    ).fetchall()
    assert len(experiments) == 1
    (experiment_id,) = experiments[0]
    runs = db.execute(
        "select run_uuid, status from runs where experiment_id = ?", (experiment_id,)
    ).fetchall()
    assert len(runs) == PROCESSES and {status for _, status in runs} == {"FINISHED"}
    per_run = dict(
        db.execute("select run_uuid, count(*) from metrics group by run_uuid").fetchall()
    )
    assert per_run == {run_id: STEPS * len(KEYS) for run_id, _ in runs}
    (total,) = db.execute("select count(*) from metrics").fetchone()
    assert total == PROCESSES * STEPS * len(KEYS)
    (trial_tags,) = db.execute(
        "select count(distinct value) from tags where key = ?", (TAG_TRIAL_ID,)
    ).fetchone()
    assert trial_tags == PROCESSES
