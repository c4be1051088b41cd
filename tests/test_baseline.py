"""The untrained base model is measured once per sweep, and the report reads lift against it."""

from __future__ import annotations

import math
import shutil

from ftsweep.report.analysis import analyse, lift_over_base
from ftsweep.report.sections import lift_and_forgetting
from ftsweep.tracking.record import TAG_INPUTS, TAG_STOP_REASON, TAG_TRIAL_ID
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.baseline import BASELINE_RUN_NAME, baseline_trial_id, record_baseline


def _runs(cfg):
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.sweep.name)
    return client.search_runs([experiment.experiment_id])


def test_base_model_is_measured_once_and_recorded_as_method_none(tiny_config):
    cfg = tiny_config("sweep.name=base", "method=qlora")
    first = record_baseline(cfg)
    assert 0.0 <= first["quality"] <= 1.0
    assert first["forgetting"] == 0.0 and first["trainable_params"] == 0
    assert first["general_text_loss"] > 5  # a random tiny model: near log(vocab size)
    assert record_baseline(cfg) == first  # found again, not measured twice
    (run,) = _runs(cfg)
    assert run.info.status == "FINISHED" and run.info.run_name == BASELINE_RUN_NAME
    assert run.data.params["method"] == "none" and run.data.params["data"] == "format"
    assert run.data.tags[TAG_TRIAL_ID] == baseline_trial_id(cfg)
    assert run.data.tags[TAG_STOP_REASON] == "completed"
    # Training knobs do not change what the base model scores; the task does.
    assert baseline_trial_id(tiny_config("sweep.name=base", "method=full")) == baseline_trial_id(
        cfg
    )
    assert baseline_trial_id(tiny_config("sweep.name=base", "data=domain")) != baseline_trial_id(
        cfg
    )


def test_report_measures_lift_against_the_base_run_and_leaves_it_out_of_the_candidates(
    fake_store, tiny_config, tmp_path
):
    # A copy: the fake store is shared by other tests, which expect no base run in it.
    db = tmp_path / "fake.db"
    shutil.copy(fake_store[0].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    base = record_baseline(tiny_config("sweep.name=fake", f"tracking.uri={uri}"))
    # The fake runs stand for trials on the base run's inputs: give them its inputs tag.
    client = get_client(uri)
    runs = client.search_runs([client.get_experiment_by_name("fake").experiment_id])
    (base_run,) = [r for r in runs if r.data.params.get("method") == "none"]
    for run in runs:
        client.set_tag(run.info.run_id, TAG_INPUTS, base_run.data.tags[TAG_INPUTS])
    a = analyse(uri, "fake")
    assert a.baseline is not None and a.baseline.quality == base["quality"]
    assert all(r.method != "none" for r in a.rows)
    lifts = {x.method: x for x in lift_over_base(a.usable, a.baseline)}
    assert set(lifts) == {"full", "lora", "qlora"}
    best_full = max(r.quality for r in a.usable if r.method == "full")
    assert math.isclose(lifts["full"].lift, best_full - base["quality"])
    text = "\n".join(str(b) for b in lift_and_forgetting(a).blocks)
    assert f"{base['quality']:.3f}" in text


def test_without_a_base_run_the_report_says_so(fake_store):
    uri, _ = fake_store
    a = analyse(uri, "fake")
    assert a.baseline is None
    assert "sweep.baseline=false" in str(lift_and_forgetting(a).blocks[0])
