"""End to end: the smoke sweep through Ray Tune leaves one FINISHED MLflow run per method."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftsweep.tracking.record import TAG_STOP_REASON, TAG_SWEEP, TAG_TRIAL_ID
from ftsweep.tracking.store import get_client


@pytest.mark.slow
def test_smoke_sweep_records_every_method(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ftsweep.cli", "sweep", "sweep=smoke", f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "best run per method (3/3 trials finished)" in out.stdout
    assert "mlflow ui --backend-store-uri" in out.stdout

    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["method"] for r in runs) == ["full", "lora", "none", "qlora"]
    (base,) = [r for r in runs if r.data.params["method"] == "none"]
    assert base.info.run_name == "base model" and base.data.metrics["forgetting"] == 0.0
    assert 0.0 <= base.data.metrics["quality"] <= 1.0
    assert "base model, untrained, on format: quality" in out.stdout
    runs = [r for r in runs if r is not base]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_SWEEP] == "smoke"
        assert run.data.tags[TAG_STOP_REASON] == "completed"
        for metric in (
            "quality",
            "wall_time_s",
            "cost_usd",
            "eval_loss",
            "tokens_per_s",
            "peak_mem_gb",
            "forgetting",
        ):
            assert metric in run.data.metrics
    assert len({r.data.tags[TAG_TRIAL_ID] for r in runs}) == 3
    assert (tmp_path / "ray").is_dir()
    # MLflow is the record: of Tune's own files per trial only result.json (its result grid's).
    tune_logs = {p.name.split(".")[0] for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    assert "result" in tune_logs and not tune_logs & {"progress", "events"}

    # Running the same command again resumes a finished sweep: nothing is trained or duplicated.
    again = subprocess.run(
        [sys.executable, "-m", "ftsweep.cli", "sweep", "sweep=smoke", f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([experiment.experiment_id])) == 4  # 3 trials + the base model
