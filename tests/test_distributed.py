"""A trial on several Ray Train workers: the group's numbers, and two real workers end to end."""

from __future__ import annotations

import math

import pytest

from ftsweep.config import ConfigError
from ftsweep.tracking.record import METRICS, TAG_FAILURES, TAG_STOP_REASON, TAG_TRIAL_ID
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.measure import group_metrics
from ftsweep.trial.outcome import TrialDiverged, stop_reason_for, worker_failure
from ftsweep.trial.run import run_trial
from ftsweep.trial.workers import DRIVER_RESOURCES, merge_worker_reports, worker_config

ZERO3 = ("method=full", "method.zero_stage=3", "method.num_workers=2")


def test_worker_config_splits_the_batch_and_pins_threads(tiny_config, tmp_path):
    cfg = tiny_config(*ZERO3, "train.batch_size=8", "results_dir=rel")
    per_worker = worker_config(cfg, num_workers=2, cpus_per_worker=1)
    assert per_worker.train.batch_size == 4  # 2 workers x 4 = the 8 sequences of one step
    assert per_worker.train.threads == 1
    assert per_worker.results_dir == str(cfg.results_path)  # workers run in their own folders
    with pytest.raises(ConfigError, match="train.batch_size=8 .* 3 workers"):
        worker_config(cfg, num_workers=3)


def test_group_metrics_sum_tokens_and_price_every_device(tiny_config):
    cfg = tiny_config(*ZERO3)
    workers = [
        {"tokens_trained": 600, "train_time_s": 2.0, "peak_mem_gb": 1.5},
        {"tokens_trained": 400, "train_time_s": 2.5, "peak_mem_gb": 1.7},
    ]
    metrics = group_metrics(workers, wall_time_s=3600.0, cfg=cfg)
    assert metrics["tokens_trained"] == 1000
    assert metrics["tokens_per_s"] == 1000 / 2.5  # the slowest worker sets the pace
    assert metrics["peak_mem_gb"] == 1.7
    assert metrics["devices"] == 2 * cfg.hardware.devices_per_trial
    # 2 devices x 1 hour x the price per device-hour
    # one CPU machine rented for an hour, however many worker processes shared it
    assert metrics["cost_usd"] == pytest.approx(cfg.hardware.price_per_device_hour)
    on_gpus = tiny_config(*ZERO3, "hardware=a100-80gb")
    gpu_cost = group_metrics(workers, wall_time_s=3600.0, cfg=on_gpus)["cost_usd"]
    # two GPUs, each held for the hour
    assert gpu_cost == pytest.approx(2 * on_gpus.hardware.price_per_device_hour)
    assert metrics["rank1_tokens_trained"] == 400


def test_merged_report_carries_the_tokens_of_all_workers():
    reports = [
        {"train_loss": 2.0, "step": 3, "tokens": 100, "rank": 0},
        {"train_loss": 2.0, "step": 3, "tokens": 120, "rank": 1},
    ]
    assert merge_worker_reports(reports) == {"train_loss": 2.0, "step": 3, "tokens": 220}


def test_the_failure_that_explains_a_worker_group_error_is_chosen():
    from ray.exceptions import ActorDiedError
    from ray.train.v2.api.exceptions import WorkerGroupError

    collateral = RuntimeError("Connection closed by peer")
    diverged = TrialDiverged("train loss became nan at step 4")
    error = WorkerGroupError("ranks failed", {0: collateral, 1: diverged})
    assert stop_reason_for(worker_failure(error)) == "diverged"
    lost = ActorDiedError()
    assert worker_failure(WorkerGroupError("lost", {0: collateral, 2: lost})) is lost
    assert (
        worker_failure(WorkerGroupError("bug", {1: ValueError("b"), 0: collateral})) is collateral
    )
    assert worker_failure(collateral) is collateral


def test_outside_tune_reports_go_to_the_given_reporter_or_nowhere():
    from ftsweep.trial.workers import _report_callbacks

    assert _report_callbacks(None) == []
    seen = []
    (callback,) = _report_callbacks(seen.append)
    callback.after_report(
        None, [{"step": 1, "tokens": 5, "rank": 0}, {"step": 1, "tokens": 7, "rank": 1}], None
    )
    assert seen == [{"step": 1, "tokens": 12}]


def test_a_worker_failure_is_recorded_and_raised_as_the_worker_raised_it(tiny_config, monkeypatch):
    import ray.train.torch
    from ray.train.v2.api.exceptions import WorkerGroupError

    class DivergingWorkers:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            nan = TrialDiverged("train loss became nan at step 1")
            raise WorkerGroupError("both ranks failed", {0: nan, 1: nan})

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", DivergingWorkers)
    cfg = tiny_config(*ZERO3, "sweep.name=diverged")
    with pytest.raises(TrialDiverged):
        run_trial(cfg, trial_id="full-diverged", invocation_id="test")
    client = get_client(tracking_uri(cfg))
    (run,) = client.search_runs([client.get_experiment_by_name("diverged").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_STOP_REASON] == "diverged"
    assert "nan" in run.data.tags["ftsweep.error"]


@pytest.mark.parametrize("placement", ["pack", "spread", "strict_spread", "strict_pack"])
def test_the_worker_group_is_placed_as_hardware_worker_placement_says(
    tiny_config, monkeypatch, placement
):
    import ray.train.torch

    seen = {}

    class Placed:
        def __init__(self, *args, scaling_config, **kwargs):
            seen["strategy"] = scaling_config.placement_strategy
            seen["workers"] = scaling_config.num_workers

        def fit(self):
            raise TrialDiverged("stop here: only the placement is under test")

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Placed)
    cfg = tiny_config(*ZERO3, f"hardware.worker_placement={placement}", "sweep.name=placed")
    with pytest.raises(TrialDiverged):
        run_trial(cfg, trial_id="full-placed", invocation_id="test")
    assert seen == {"strategy": placement.upper(), "workers": 2}


def test_worker_placement_is_checked_and_leaves_the_trial_id_alone(tiny_config):
    from ftsweep.trial.identity import trial_id_for

    with pytest.raises(ConfigError, match="hardware.worker_placement.*scatter.*strict_spread"):
        tiny_config(*ZERO3, "hardware.worker_placement=scatter")
    spread = tiny_config(*ZERO3, "hardware.worker_placement=strict_spread")
    assert trial_id_for(spread) == trial_id_for(tiny_config(*ZERO3))


@pytest.fixture(scope="module")
def ray_two_cpus():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _assert_contract(cfg, trial_id: str) -> dict:
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.sweep.name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_TRIAL_ID] == trial_id
    assert run.data.tags[TAG_STOP_REASON] == "completed"
    # The driver opened the run once; rank 0 wrote to it without reopening it.
    assert TAG_FAILURES not in run.data.tags
    params, metrics = run.data.params, run.data.metrics
    assert params["method"] == "full" and params["zero_stage"] == "3"
    for key in METRICS:
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["cost_usd"] > 0 and metrics["tokens_per_s"] > 0 and metrics["peak_mem_gb"] > 0
    assert metrics["trainable_params"] > 1e6 and metrics["artifact_mb"] > 5
    # Both workers trained: the world size was two, and each trained a part of the tokens.
    assert params["num_workers"] == "2"
    per_worker = [metrics["rank0_tokens_trained"], metrics["rank1_tokens_trained"]]
    assert all(tokens > 0 for tokens in per_worker)
    assert sum(per_worker) == metrics["tokens_trained"]
    assert metrics["devices"] == 2
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [1, 2]  # logged once, by rank 0
    return metrics


@pytest.mark.slow
def test_two_worker_zero3_trial_records_one_run(tiny_config, ray_two_cpus):
    cfg = tiny_config(*ZERO3, "sweep.name=workers")
    result = run_trial(cfg, trial_id="full-two-workers", invocation_id="test")
    assert (result.status, result.stop_reason) == ("FINISHED", "completed")
    recorded = _assert_contract(cfg, "full-two-workers")
    assert result.metrics["tokens_trained"] == recorded["tokens_trained"]

    again = run_trial(cfg, trial_id="full-two-workers", invocation_id="test")
    assert again.stop_reason == "already_recorded" and again.run_id == result.run_id


@pytest.mark.slow
def test_workers_started_from_a_tune_trial_report_to_tune(tiny_config, ray_two_cpus, tmp_path):
    from ray import tune

    cfg = tiny_config(*ZERO3, "sweep.name=tuned")

    def trainable(config):
        result = run_trial(cfg, trial_id="full-in-tune", invocation_id="tune")
        tune.report({**result.metrics, "stop_reason": result.stop_reason})

    # The trial only waits on its workers: it reserves no CPU, the two workers take one each.
    tuner = tune.Tuner(
        tune.with_resources(trainable, DRIVER_RESOURCES),
        run_config=tune.RunConfig(name="tuned", storage_path=str(tmp_path / "ray"), verbose=0),
    )
    (trial,) = tuner.fit()
    assert trial.error is None
    assert trial.metrics["stop_reason"] == "completed"
    recorded = _assert_contract(cfg, "full-in-tune")
    # The workers' step reports reached Tune, each with the tokens of both workers.
    reports = trial.metrics_dataframe
    steps = reports[reports["quality"].isna()]
    assert list(steps["step"]) == [1, 2]
    assert steps["tokens"].iloc[-1] == recorded["tokens_trained"]


def test_a_dead_workers_failed_health_check_is_a_lost_actor_worth_a_retry():
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
    from ray.train.v2.api.exceptions import WorkerGroupError

    from ftsweep.sweep.trainable import is_transient

    died = ActorDiedError()
    error = WorkerGroupError(
        "rank 1 died", {1: WorkerHealthCheckFailedError("health check failed", failure=died)}
    )
    assert worker_failure(error) is died
    assert is_transient(worker_failure(error))
    assert not is_transient(error)  # unwrapped or not, the wrapper alone says nothing
