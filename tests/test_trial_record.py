"""A trial's MLflow record: the contract other tools read, and one run per trial id."""

from __future__ import annotations

import math
import os

import pytest

from ftsweep.tracking.record import (
    METRICS,
    TAG_RUN_ID,
    TAG_STOP_REASON,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TrialRun,
    mark_abandoned_runs,
)
from ftsweep.tracking.store import ensure_experiment, get_client, tracking_uri
from ftsweep.trial.identity import run_name_for, trial_id_for
from ftsweep.trial.outcome import TrialDiverged
from ftsweep.trial.run import run_trial


def _runs(cfg):
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.sweep.name)
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_trial_records_the_contract(tiny_config, method):
    cfg = tiny_config(f"method={method}", "sweep.name=contract")
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    (run,) = _runs(cfg)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["method"] == method
    assert float(params["learning_rate"]) == cfg.method.learning_rate
    lora_keys = {"lora_r", "lora_alpha", "target_modules"}
    if method == "full":
        assert not lora_keys & set(params), "full runs carry no LoRA params"
    else:
        assert lora_keys <= set(params)
    for key in METRICS:
        assert key in metrics and math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["quality"] <= 1.0
    assert metrics["cost_usd"] > 0 and metrics["wall_time_s"] > 0 and metrics["tokens_per_s"] > 0
    assert tags[TAG_SWEEP] == "contract"
    assert tags[TAG_TRIAL_ID] == trial_id_for(cfg)
    assert tags[TAG_RUN_ID] == "train"
    assert tags[TAG_STOP_REASON] == "completed"
    history = get_client(tracking_uri(cfg)).get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    if method == "full":
        assert metrics["trainable_params"] > 1e6
        assert metrics["artifact_mb"] > 5
    else:
        assert metrics["trainable_params"] < 1e5
        assert metrics["artifact_mb"] < 1
        artifacts = get_client(tracking_uri(cfg)).list_artifacts(run.info.run_id, "adapter")
        assert any(a.path.endswith("adapter_config.json") for a in artifacts)


def test_rerun_of_a_finished_trial_trains_nothing(tiny_config):
    cfg = tiny_config("sweep.name=again")
    first = run_trial(cfg)
    second = run_trial(cfg)
    assert second.stop_reason == "already_recorded"
    assert second.run_id == first.run_id
    assert second.metrics["quality"] == first.metrics["quality"]
    assert len(_runs(cfg)) == 1


def test_interrupted_trial_is_reopened_not_duplicated(tiny_config):
    cfg = tiny_config("sweep.name=resume")
    # A driver that died mid-trial leaves a RUNNING run with some steps logged.
    dead = TrialRun(cfg, trial_id_for(cfg), run_name_for(cfg), invocation_id="dead-driver")
    dead.log_metrics({"train_loss": 9.0}, step=1)
    client = get_client(tracking_uri(cfg))
    experiment_id = ensure_experiment(client, "resume", None)
    assert mark_abandoned_runs(client, experiment_id) == 1
    assert client.get_run(dead.run_id).info.status == "KILLED"

    result = run_trial(cfg, invocation_id="second-driver")
    runs = _runs(cfg)
    assert [r.info.run_id for r in runs] == [dead.run_id] == [result.run_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags[TAG_RUN_ID] == "second-driver"
    # Step 1 was logged before the crash and is not logged twice.
    steps = [m.step for m in client.get_metric_history(dead.run_id, "train_loss")]
    assert steps == [1, 2]


def test_a_crash_after_the_last_train_loss_still_gets_its_final_metrics(tiny_config):
    cfg = tiny_config("sweep.name=late-crash")
    max_steps = cfg.train.max_steps
    # The driver died after logging the last step's train loss, before the final metrics.
    dead = TrialRun(cfg, trial_id_for(cfg), run_name_for(cfg), invocation_id="dead-driver")
    dead.log_metrics({"train_loss": 9.0}, step=max_steps)

    run_trial(cfg, invocation_id="second-driver")
    client = get_client(tracking_uri(cfg))
    (run,) = _runs(cfg)
    assert run.info.run_id == dead.run_id and run.info.status == "FINISHED"
    for key in METRICS:
        assert key in run.data.metrics, key
    history = client.get_metric_history(dead.run_id, "train_loss")
    assert [(m.step, m.value) for m in history if m.step == max_steps] == [(max_steps, 9.0)]


def test_nan_loss_raises_diverged():
    from ftsweep.trial.hf_trainer import progress_callback

    class Recorder:
        logged: list = []

        def log_metrics(self, metrics, step):
            self.logged.append((step, metrics))

    class State:
        global_step = 3

    callback = progress_callback(Recorder(), report=None, counter=None)
    with pytest.raises(TrialDiverged, match="step 3"):
        callback.on_log(None, State(), None, logs={"loss": float("nan")})
    with pytest.raises(TrialDiverged):
        callback.on_log(None, State(), None, logs={"loss": float("inf")})
    assert Recorder.logged == []


def test_diverged_trial_is_recorded_failed_with_reason(tiny_config, monkeypatch):
    import ftsweep.trial.recipe as trial

    def diverge(*args, **kwargs):
        raise TrialDiverged("train loss became nan at step 1")

    monkeypatch.setattr(trial, "train_and_evaluate", diverge)
    cfg = tiny_config("sweep.name=diverge")
    with pytest.raises(TrialDiverged):
        run_trial(cfg)
    (run,) = _runs(cfg)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_STOP_REASON] == "diverged"
    assert "nan" in run.data.tags["ftsweep.error"]


def test_trials_in_one_process_leave_nothing_to_the_next(tiny_config, monkeypatch):
    """A sweep worker runs trial after trial: a LoRA trial after a full one must not go through
    DeepSpeed, and no launcher variable may reach a child process."""
    import deepspeed

    engines = []
    initialize = deepspeed.initialize

    def counted(*args, **kwargs):
        engines.append(kwargs.get("model"))
        return initialize(*args, **kwargs)

    monkeypatch.setattr(deepspeed, "initialize", counted)
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    before = {k: os.environ.get(k) for k in (*launcher, "ACCELERATE_USE_DEEPSPEED")}
    for method in ("full", "lora", "full"):
        cfg = tiny_config(f"method={method}", "sweep.name=in-turn")
        assert run_trial(cfg, trial_id=f"{method}-{len(engines)}").status == "FINISHED"
    assert len(engines) == 2  # the two full trials, not the LoRA one
    assert {k: os.environ.get(k) for k in before} == before
