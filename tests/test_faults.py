"""Faults a trial survives: out of memory and divergence are recorded FAILED with their reason."""

from __future__ import annotations

import pytest

from ftsweep.tracking.record import TAG_ERROR, TAG_PEAK_MEM_GB, TAG_PLAN_PEAK_GB, TAG_STOP_REASON
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.measure import planned_peak_gb
from ftsweep.trial.outcome import TrialDiverged
from ftsweep.trial.run import run_trial


def _only_run(cfg):
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.sweep.name)
    (run,) = client.search_runs([experiment.experiment_id])
    return run


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("cannot allocate 2.1 GB"),
        "cuda",  # torch.OutOfMemoryError, what CUDA raises
    ],
)
def test_out_of_memory_is_recorded_with_the_plans_estimate(tiny_config, monkeypatch, error):
    import torch
    from transformers import Trainer

    if error == "cuda":
        error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def out_of_memory(self, *args, **kwargs):
        raise error

    # The model and the Trainer are built for real; the first training step runs out of memory.
    monkeypatch.setattr(Trainer, "train", out_of_memory)
    cfg = tiny_config("sweep.name=oom")
    with pytest.raises(type(error)):
        run_trial(cfg)
    run = _only_run(cfg)
    tags = run.data.tags
    assert run.info.status == "FAILED"
    assert tags[TAG_STOP_REASON] == "oom"
    assert type(error).__name__ in tags[TAG_ERROR]
    planned = planned_peak_gb(cfg)
    assert planned is not None and planned > 0
    assert float(tags[TAG_PLAN_PEAK_GB]) == pytest.approx(planned, abs=1e-3)
    assert float(tags[TAG_PEAK_MEM_GB]) > 0


def test_no_estimate_without_an_architecture_block(tiny_config):
    cfg = tiny_config()
    bare = cfg.model_copy(update={"model": cfg.model.model_copy(update={"architecture": None})})
    assert planned_peak_gb(bare) is None


def test_a_failure_that_is_not_oom_carries_no_memory_tags(tiny_config, monkeypatch):
    import ftsweep.trial.recipe as trial

    def diverge(*args, **kwargs):
        raise TrialDiverged("train loss became nan at step 1")

    monkeypatch.setattr(trial, "train_and_evaluate", diverge)
    cfg = tiny_config("sweep.name=diverged")
    with pytest.raises(TrialDiverged):
        run_trial(cfg)
    tags = _only_run(cfg).data.tags
    assert tags[TAG_STOP_REASON] == "diverged"
    assert TAG_PLAN_PEAK_GB not in tags and TAG_PEAK_MEM_GB not in tags


@pytest.mark.parametrize("first_bad_step", [1, 3])
def test_a_nan_loss_stops_the_trial_within_its_step(tiny_config, monkeypatch, first_bad_step):
    from transformers import Trainer

    compute_loss = Trainer.compute_loss
    steps = []

    def nan_from_a_step(self, model, inputs, *args, **kwargs):
        loss = compute_loss(self, model, inputs, *args, **kwargs)
        if not model.training:
            return loss
        steps.append(self.state.global_step + 1)
        return loss * float("nan") if steps[-1] >= first_bad_step else loss

    monkeypatch.setattr(Trainer, "compute_loss", nan_from_a_step)
    # Train loss is logged only every 100 steps: the check is per step, not per log.
    cfg = tiny_config("sweep.name=nan-loss", "train.max_steps=4", "train.log_every=100")
    with pytest.raises(TrialDiverged, match=f"step {first_bad_step}"):
        run_trial(cfg)
    assert steps[-1] == first_bad_step  # no step ran after the bad one
    run = _only_run(cfg)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_STOP_REASON] == "diverged"


def test_train_exits_non_zero_with_one_clear_line_on_divergence(
    tiny_overrides, monkeypatch, capsys
):
    import ftsweep.trial.recipe as trial
    from ftsweep.cli import main

    def diverge(*args, **kwargs):
        raise TrialDiverged("train loss became nan at step 3")

    monkeypatch.setattr(trial, "train_and_evaluate", diverge)
    assert main(["train", *tiny_overrides, "sweep.name=cli-diverged"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert "diverged" in text and "nan at step 3" in text


@pytest.mark.parametrize(
    "raised, status, reason",
    [
        (TrialDiverged("train loss became nan at step 1"), "FAILED", "diverged"),
        (SystemExit(), "FINISHED", "early_stopped"),
        (KeyboardInterrupt(), "KILLED", "interrupted"),
    ],
)
def test_a_run_that_did_not_complete_is_still_priced(
    tiny_config, monkeypatch, raised, status, reason
):
    import time

    import ftsweep.trial.recipe as trial
    from ftsweep.planning.cost import run_cost_usd

    def spend_then_raise(*args, **kwargs):
        time.sleep(0.3)
        raise raised

    monkeypatch.setattr(trial, "train_and_evaluate", spend_then_raise)
    cfg = tiny_config(f"sweep.name=priced-{reason}")
    with pytest.raises(type(raised)):
        run_trial(cfg)
    run = _only_run(cfg)
    assert (run.info.status, run.data.tags[TAG_STOP_REASON]) == (status, reason)
    wall = run.data.metrics["wall_time_s"]
    assert wall >= 0.3
    assert run.data.metrics["cost_usd"] == pytest.approx(run_cost_usd(wall, cfg.hardware))
