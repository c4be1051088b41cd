"""MLflow stores built for the report's tests, in the record a trial writes today (inputs params,
the `ftsweep.inputs` tag, intervals, test quality and `scores/scores.json`), and the report's
reading of per-example scores from them.

`Store` is imported by the other report tests: each test builds the runs it needs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest

from ftsweep.data.intervals import mean_interval
from ftsweep.planning.cost import load_hardware
from ftsweep.report.runs import load_rows
from ftsweep.report.scores import NO_SCORES, SCORES_PATH, ScoreSource, parse_scores
from ftsweep.tracking.record import TAG_INPUTS, TAG_STOP_REASON, TAG_SWEEP, TAG_TRIAL_ID


def right(count: int, n: int = 32, offset: int = 0) -> list[float]:
    """n binary scores, `count` of them 1: examples offset .. offset+count-1 (mod n)."""
    return [1.0 if (i - offset) % n < count else 0.0 for i in range(n)]


def ids(n: int) -> list[str]:
    return [f"ex{i:05d}" for i in range(n)]


_EMPTY_STORE: list[Path] = []  # a store with MLflow's tables made once, copied for each test


def _empty_store() -> Path:
    """MLflow creates and migrates a new store's tables in seconds; a copy takes none."""
    if not _EMPTY_STORE:
        from ftsweep.tracking.store import get_client

        path = Path(tempfile.mkdtemp(prefix="ftsweep-empty-store-")) / "mlflow.db"
        get_client(f"sqlite:///{path}").search_experiments()
        _EMPTY_STORE.append(path)
    return _EMPTY_STORE[0]


class Store:
    """A SQLite MLflow store with one experiment; `run` logs one run as a trial records it."""

    def __init__(self, root: Path, experiment: str = "sweep"):
        from ftsweep.tracking.store import ensure_experiment, get_client

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(_empty_store(), self.root / "mlflow.db")
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.experiment = experiment
        self.client = get_client(self.uri)
        self.experiment_id = ensure_experiment(self.client, experiment, self.root / "mlartifacts")
        self.count = 0

    def inputs_params(self, difficulty: str = "medium", num_eval: int = 32) -> dict[str, str]:
        return {
            "model": "smollm2-135m",
            "model.path": "builtin:smollm2-135m",
            "model.fingerprint": "w1234",
            "data": "format",
            "data.task": "format",
            "data.difficulty": difficulty,
            "data.num_train": "512",
            "data.num_eval": str(num_eval),
            "data.num_test": "32",
            "data.seed": "0",
            "data.path": "None",
            "data.eval_path": "None",
            "data.format": "None",
            "data.eval_fraction": "None",
            "data.metric": "None",
            "data.fingerprint": "d5678",
            "max_new_tokens": "48",
            "eval_batch_size": "16",
        }

    def run(
        self,
        method: str,
        scores: list[float] | None,
        *,
        lr: float = 1e-3,
        seed: int = 0,
        r: int | None = None,
        alpha: float | None = None,
        targets: str = "all-linear",
        test_scores: list[float] | None = None,
        wall: float = 120.0,
        hardware: str = "cpu",
        inputs: str | None = "inputs-a",
        difficulty: str = "medium",
        status: str = "FINISHED",
        stop: str = "completed",
        log_scores: bool = True,
        log_intervals: bool = True,
        quality: float | None = None,
        name: str | None = None,
        artifact_mb: float | None = None,
        adapter: bool = False,
    ) -> str:
        """One run; `scores` are its validation scores (None: no quality, as a failed run)."""
        from mlflow.entities import Metric, Param

        self.count += 1
        base = method == "none"
        if name is None:
            knobs = f"r{r} a{alpha or 2 * r} {targets}" if r else "zero2"
            name = "base model" if base else f"{method} {knobs} lr{lr:.0e} s{seed}"
        tags = {TAG_SWEEP: self.experiment, TAG_TRIAL_ID: f"trial-{self.count}"}
        if inputs is not None:
            tags[TAG_INPUTS] = inputs
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        params = {"method": method, "hardware": hardware, "seq_len": "256", "precision": "fp32"}
        params |= self.inputs_params(difficulty, len(scores) if scores else 32)
        if not base:
            params |= {
                "learning_rate": str(lr),
                "weight_decay": "0.0",
                "warmup_ratio": "0.0",
                "max_steps": "40",
                "batch_size": "4",
                "grad_accum": "1",
                "seed": str(seed),
            }
            if r:
                params |= {
                    "lora_r": str(r),
                    "lora_alpha": str(float(alpha if alpha is not None else 2 * r)),
                    "lora_dropout": "0.0",
                    "target_modules": targets,
                }
            else:
                params |= {"zero_stage": "2", "offload": "False", "num_workers": "1"}
        metrics = {
            "wall_time_s": wall,
            "cost_usd": wall / 3600 * load_hardware("cpu").price_per_device_hour,
            "artifact_mb": artifact_mb if artifact_mb is not None else (0.1 * r if r else 270.0),
            "trainable_params": float((r or 400) * 8192),
            "forgetting": 0.01,
            "eval_loss": 1.0,
        }
        test_scores = test_scores if test_scores is not None else scores
        splits = {}
        for split, prefix, values in (("validation", "", scores), ("test", "test_", test_scores)):
            if values is None:
                continue
            metrics[f"{prefix}quality"] = (
                quality if quality is not None and not prefix else sum(values) / len(values)
            )
            if log_intervals:
                low, high = mean_interval(values)
                metrics[f"{prefix}quality_ci_low"] = low
                metrics[f"{prefix}quality_ci_high"] = high
                metrics["num_eval_examples" if not prefix else "num_test_examples"] = len(values)
            splits[split] = {"ids": ids(len(values)), "scores": values}
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items() if math.isfinite(v)],
        )
        if log_scores and splits:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "scores.json"
                path.write_text(json.dumps(splits))
                self.client.log_artifact(run_id, str(path), "scores")
        if adapter:  # a stand-in for the peft folder: listed, never loaded
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "adapter_config.json").write_text("{}")
                self.client.log_artifacts(run_id, tmp, "adapter")
        self.client.set_tag(run_id, TAG_STOP_REASON, stop)
        self.client.set_terminated(run_id, status=status)
        return run_id

    def base(self, scores: list[float], **kw) -> str:
        return self.run("none", scores, **kw)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path)


def test_scores_are_read_from_the_artifact_and_cached_per_run(store, tmp_path):
    with_scores = store.run("lora", right(30), r=16, test_scores=right(20))
    without = store.run("lora", right(29), r=64, log_scores=False)
    rows = {r.run_id: r for r in load_rows(store.uri, "sweep")}
    cache = tmp_path / "cache"
    source = ScoreSource(cache)
    got = source.scores(rows[with_scores])
    assert got.validation == dict(zip(ids(32), right(30), strict=True))
    assert sum(got.test.values()) == 20
    assert source.scores(rows[without]) is None
    assert source.why_none(rows[without]) == NO_SCORES
    assert (cache / f"{with_scores}.json").is_file()
    # Read on this disk where the artifacts are local, else through the client: the same scores
    assert rows[with_scores].artifact_uri.startswith("file:")
    ScoreSource._memory.clear()
    elsewhere = {k: dataclasses.replace(r, artifact_uri="") for k, r in rows.items()}
    assert ScoreSource().scores(elsewhere[with_scores]) == got
    assert ScoreSource().why_none(elsewhere[without]) == NO_SCORES
    # Once cached on disk, the store is not asked again: it works with the artifact gone.
    for path in (store.root / "mlartifacts").rglob("scores.json"):
        path.unlink()
    ScoreSource._memory.clear()
    assert ScoreSource(cache).scores(rows[with_scores]) == got
    ScoreSource._memory.clear()
    assert ScoreSource().scores(rows[with_scores]) is None  # no cache: really gone


def test_an_unreadable_scores_file_is_named_not_fatal(store, tmp_path):
    run_id = store.run("lora", None, r=8, quality=0.5)
    bad = tmp_path / "scores.json"
    bad.write_text(json.dumps({"validation": {"ids": ["a", "a"], "scores": [1, 0]}}))
    store.client.log_artifact(run_id, str(bad), "scores")
    (row,) = load_rows(store.uri, "sweep")
    why = ScoreSource().why_none(row)
    assert SCORES_PATH in why and "appears twice" in why


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"test": {"ids": [], "scores": []}}, "no 'validation'"),
        ({"validation": {"ids": ["a"], "scores": [1, 0]}}, "1 ids but 2 scores"),
        ({"validation": {"ids": ["a"], "scores": [1.5]}}, "outside"),
        ({"validation": {"ids": [], "scores": []}}, "empty"),
        ({"validation": {"scores": [1]}}, "not {ids, scores}"),
    ],
)
def test_parse_scores_names_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message):
        parse_scores(json.dumps(data))


def test_the_store_builder_writes_the_record_the_report_reads(store):
    store.base(right(0))
    store.run("full", right(31), lr=1e-4, seed=1)
    base, full = load_rows(store.uri, "sweep")
    assert base.method == "none" and base.tags[TAG_INPUTS] == "inputs-a"
    assert full.logged_interval() == tuple(mean_interval(right(31)))
    low, high = full.logged_interval()
    assert low < full.quality <= high and full.num_examples == 32
    assert full.test_quality == pytest.approx(31 / 32)
