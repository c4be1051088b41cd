"""A grid sweep over a store that already holds some of its trials: the driver reports those from
MLflow and hands Ray only the rest; one whose every trial is recorded starts no Tune run."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ftsweep.sweep.space import expand
from ftsweep.tracking.record import TAG_TRIAL_ID
from ftsweep.tracking.store import experiment_name, get_client, tracking_uri


def _sweep_file(tmp_path):
    doc = {
        "sweep": {
            "name": "recorded",
            "algorithm": "grid",
            "seeds": 1,
            "space": [
                {
                    "method": "lora",
                    "params": {
                        "learning_rate": [1e-3],
                        "lora_r": [4, 8, 16],
                        "lora_alpha_ratio": 2,
                    },
                }
            ],
        }
    }
    path = tmp_path / "recorded.yaml"
    path.write_text("# @package _global_\n" + yaml.safe_dump(doc))
    return path


def _finished(cfg) -> dict[str, tuple[str, int]]:
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(experiment_name(cfg))
    runs = client.search_runs([experiment.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)
    ids = [r.data.tags[TAG_TRIAL_ID] for r in runs]
    assert len(ids) == len(set(ids))  # one run per trial id, none duplicated
    return {r.data.tags[TAG_TRIAL_ID]: (r.info.run_id, r.info.end_time) for r in runs}


def _ray_trials(cfg, specs) -> list[str]:
    from ftsweep.sweep.tuner import ray_experiment_name

    folder = cfg.results_path / "ray" / ray_experiment_name(cfg, specs)
    (state,) = folder.glob("experiment_state-*.json")
    trials = json.loads(state.read_text())["trial_data"]
    return [json.loads(data)["config"]["trial_id"] for data, _ in trials]


@pytest.mark.slow
def test_recorded_trials_are_reported_by_the_driver_and_only_the_rest_go_to_ray(
    tiny_config, tmp_path
):
    from ftsweep.sweep.run import run_sweep
    from ftsweep.trial.run import run_trial

    cfg = tiny_config(f"sweep={_sweep_file(tmp_path)}")
    specs = expand(cfg)
    assert len(specs) == 3
    # two trials recorded outside this sweep's Ray state (another sweep file, another machine)
    for spec in specs[:2]:
        assert run_trial(spec.config, trial_id=spec.trial_id).stop_reason == "completed"
    before = _finished(cfg)

    outcome = run_sweep(cfg)
    assert not outcome.interrupted and not outcome.errors
    for spec in specs[:2]:
        assert outcome.results[spec.trial_id]["stop_reason"] == "already_recorded"
        assert outcome.results[spec.trial_id]["quality"] is not None
    assert outcome.results[specs[2].trial_id]["stop_reason"] == "completed"
    assert _ray_trials(cfg, specs) == [specs[2].trial_id]  # Ray saw only the one to train
    after = _finished(cfg)
    base = {k for k in after if k.startswith("none-")}  # the base model's run (sweep.baseline)
    assert len(base) == 1 and set(after) - base == {s.trial_id for s in specs}
    assert {k: after[k] for k in before} == before  # the recorded runs untouched

    # Every trial recorded and no Ray state (a results folder moved elsewhere): no Tune run.
    shutil.rmtree(cfg.results_path / "ray")
    again = run_sweep(cfg)
    assert not again.interrupted and not again.errors
    assert {k: r["stop_reason"] for k, r in again.results.items()} == {
        s.trial_id: "already_recorded" for s in specs
    }
    assert not any((cfg.results_path / "ray").iterdir())
    assert _finished(cfg) == after
