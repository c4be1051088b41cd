"""A trial that broke off resumes from its last checkpoint, in the same MLflow run."""

from __future__ import annotations

import pytest

import ftsweep.trial.recipe as trial
from ftsweep.planning.cost import run_cost_usd
from ftsweep.tracking.record import TAG_FAILURES, TAG_RESUMED_FROM, TAG_STOP_REASON
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.checkpoints import checkpoint_dir
from ftsweep.trial.identity import trial_id_for
from ftsweep.trial.run import run_trial


class WorkerLost(RuntimeError):
    pass


def _trained_steps(monkeypatch) -> list[int]:
    """The optimizer steps that actually ran forward/backward, in order."""
    from transformers import Trainer

    steps: list[int] = []
    training_step = Trainer.training_step

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step + 1)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counted)
    return steps


def test_a_broken_off_trial_resumes_from_its_checkpoint_in_the_same_run(tiny_config, monkeypatch):
    cfg = tiny_config("sweep.name=resume-ckpt", "train.max_steps=4", "train.checkpoint_every=2")
    steps = _trained_steps(monkeypatch)
    real_trainer_class = trial.trainer_class

    def dies_in_step_3():
        class Dies(real_trainer_class()):
            def training_step(self, *args, **kwargs):
                if self.state.global_step == 2:
                    raise WorkerLost("the worker died in step 3")
                return super().training_step(*args, **kwargs)

        return Dies

    monkeypatch.setattr(trial, "trainer_class", dies_in_step_3)
    with pytest.raises(WorkerLost):
        run_trial(cfg)
    folder = checkpoint_dir(cfg, trial_id_for(cfg))
    assert [p.name for p in folder.iterdir()] == ["checkpoint-2"]

    monkeypatch.setattr(trial, "trainer_class", real_trainer_class)
    steps.clear()
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    assert steps == [3, 4]  # steps 1-2 came back from the checkpoint, not from training again
    client = get_client(tracking_uri(cfg))
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert (tags[TAG_FAILURES], tags[TAG_RESUMED_FROM], tags[TAG_STOP_REASON]) == (
        "1",
        "2",
        "completed",
    )
    history = client.get_metric_history(result.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # as many steps as an unbroken trial
    assert not folder.exists()  # finished: the checkpoints are gone
    # Both attempts are paid for: the one that broke off and the one that finished.
    attempts = {
        m.step: m.value for m in client.get_metric_history(result.run_id, "attempt_wall_time_s")
    }
    assert sorted(attempts) == [0, 1] and all(s > 0 for s in attempts.values())
    metrics = run.data.metrics
    assert metrics["wall_time_s"] == pytest.approx(sum(attempts.values()))
    assert metrics["lost_wall_time_s"] == pytest.approx(attempts[0])
    assert metrics["cost_usd"] == pytest.approx(run_cost_usd(metrics["wall_time_s"], cfg.hardware))


def test_no_checkpoint_of_the_last_step_and_none_when_turned_off(tiny_config, monkeypatch):
    monkeypatch.setattr(trial, "discard_checkpoints", lambda *a, **k: None)  # keep what was written
    cfg = tiny_config("sweep.name=ckpt", "train.max_steps=4", "train.checkpoint_every=2")
    assert run_trial(cfg).status == "FINISHED"
    # Step 4 ends training: its checkpoint would never be resumed from, so it is not written.
    assert [p.name for p in checkpoint_dir(cfg, trial_id_for(cfg)).iterdir()] == ["checkpoint-2"]

    off = tiny_config("sweep.name=ckpt-off", "train.max_steps=4", "train.checkpoint_every=null")
    assert run_trial(off).status == "FINISHED"
    assert not checkpoint_dir(off, trial_id_for(off)).exists()


def test_a_checkpoint_half_written_when_the_worker_died_is_passed_over(tiny_config, monkeypatch):
    """A kill while checkpoint-4 is being saved leaves a folder with weights but no trainer
    state: the retry resumes from checkpoint-2, the last one written to the end."""
    from transformers import Trainer

    cfg = tiny_config("sweep.name=resume-torn", "train.max_steps=6", "train.checkpoint_every=2")
    steps = _trained_steps(monkeypatch)
    save_rng_state = Trainer._save_rng_state

    def dies_while_saving_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise WorkerLost("the worker died while saving checkpoint-4")
        return save_rng_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", dies_while_saving_step_4)
    with pytest.raises(WorkerLost):
        run_trial(cfg)
    folder = checkpoint_dir(cfg, trial_id_for(cfg))
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert not (folder / "checkpoint-4" / "trainer_state.json").exists()

    monkeypatch.setattr(Trainer, "_save_rng_state", save_rng_state)
    steps.clear()
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    assert steps == [3, 4, 5, 6]
    tags = get_client(tracking_uri(cfg)).get_run(result.run_id).data.tags
    assert (tags[TAG_RESUMED_FROM], tags[TAG_STOP_REASON]) == ("2", "completed")
    assert not folder.exists()


def test_saving_checkpoints_is_timed_apart_from_training(tiny_config):
    cfg = tiny_config("sweep.name=ckpt-time", "train.max_steps=4", "train.checkpoint_every=1")
    result = run_trial(cfg)
    metrics = get_client(tracking_uri(cfg)).get_run(result.run_id).data.metrics
    # three saves (steps 1-3; the last step's is skipped), inside the Trainer's runtime
    assert 0 < metrics["checkpoint_time_s"] < result.metrics["train_time_s"]
    training_s = result.metrics["train_time_s"] - metrics["checkpoint_time_s"]
    assert metrics["tokens_per_s"] == pytest.approx(result.metrics["tokens_trained"] / training_s)

    unsaved = run_trial(
        tiny_config("sweep.name=ckpt-none", "train.max_steps=4", "train.checkpoint_every=null")
    )
    assert unsaved.metrics["checkpoint_time_s"] == 0
