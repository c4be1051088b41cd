"""A trial the scheduler stopped whose process ended before it could close its run: the
driver closes it as an early stop, priced up to the last thing it logged, and leaves the runs
of trials that were not stopped (an interrupted sweep resumes them) as they are."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from ftsweep.sweep.run import close_stopped_trials
from ftsweep.tracking.record import TAG_STOP_REASON, TrialRun
from ftsweep.trial.attempts import begin_attempt
from ftsweep.trial.checkpoints import checkpoint_dir


def _open_trial(cfg, trial_id: str) -> TrialRun:
    run = TrialRun(cfg, trial_id, f"run-{trial_id}", "test")
    begin_attempt(run, time.time() - 5.0)  # started five seconds ago
    run.log_metrics({"train_loss": 2.0}, step=1)
    run.log_metrics({"eval_loss": 1.9}, step=2)
    return run


def _trials(cfg, *trial_ids: str) -> dict:
    """A grid's trials by id, as the sweep hands them to Tune beside the points."""
    return {
        t: {"trial_id": t, "run_name": f"run-{t}", "config": cfg.model_dump()} for t in trial_ids
    }


def _result(trial_id: str):
    return SimpleNamespace(config={"trial_id": trial_id})  # a grid point names its trial


def test_the_driver_closes_a_stopped_trial_left_running(tiny_config):
    cfg = tiny_config()
    stopped, interrupted = _open_trial(cfg, "stopped1"), _open_trial(cfg, "running1")
    checkpoint_dir(cfg, "stopped1").mkdir(parents=True)
    grid = [_result("stopped1"), _result("running1")]
    trials = _trials(cfg, "stopped1", "running1")

    close_stopped_trials(stopped.client, stopped.experiment_id, grid, cfg, {"stopped1"}, trials)

    closed = stopped.client.get_run(stopped.run_id)
    assert closed.info.status == "FINISHED"
    assert closed.data.tags[TAG_STOP_REASON] == "early_stopped"
    # priced from its start to its last logged metric (about five seconds), not zero
    assert 4.0 < closed.data.metrics["wall_time_s"] < 60.0
    assert closed.data.metrics["cost_usd"] > 0
    assert closed.data.metrics["lost_wall_time_s"] == 0
    assert "quality" not in closed.data.metrics
    assert not checkpoint_dir(cfg, "stopped1").exists()

    untouched = interrupted.client.get_run(interrupted.run_id)
    assert untouched.info.status == "RUNNING"
    assert "cost_usd" not in untouched.data.metrics


def test_a_stopped_trial_that_closed_itself_is_left_as_it_recorded(tiny_config):
    cfg = tiny_config()
    run = _open_trial(cfg, "stopped2")
    run.log_metrics({"wall_time_s": 3.0, "cost_usd": 0.5}, step=cfg.train.max_steps)
    run.finish("FINISHED", "early_stopped")

    close_stopped_trials(
        run.client,
        run.experiment_id,
        [_result("stopped2")],
        cfg,
        {"stopped2"},
        _trials(cfg, "stopped2"),
    )

    record = run.client.get_run(run.run_id)
    assert record.data.metrics["cost_usd"] == pytest.approx(0.5)
    assert record.data.metrics["wall_time_s"] == pytest.approx(3.0)
