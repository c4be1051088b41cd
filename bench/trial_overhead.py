"""per_trial_overhead_s: the orchestration seconds each trial costs a sweep, over N one-step
trials of the tiny random model through `ftsweep sweep` (Ray Tune, MLflow's SQLite store).

What is measured: `ftsweep sweep` with a one-point LoRA space repeated over N seeds
(`sweep.seeds=N`: N identical trials, each one optimizer step on 4 examples and scored on 2,
`sweep.baseline=false`), one trial at a time (`sweep.max_concurrent_trials=1`, the default; on
this 2-core machine a trial gets both cores), into a store that already exists (as
`overhead.py`). Each trial records its own `wall_time_s`: model load, training, scoring, what
the trial would cost run alone. The MLflow runs say when each trial was open.

The figure, at the largest N:

    per_trial_overhead_s = (c x span - sum of the trials' own wall_time_s) / N

where span runs from the first run's start to the last run's end and c is the concurrency (1):
the slot time a trial holds beyond its own work, on average. It counts what happens between
and around the trials (Ray starting the next trial, Tune's result handling and its
experiment-state saves, the trial's MLflow run being looked up by trial id, created, its params
and metrics written and closed). It leaves out what a sweep pays once whatever its size (Ray's
start and the worker's first imports before the first run, Ray's shutdown after the last):
the details give those (`startup_s`, `end_s`) and the figure with them spread over the trials
(`per_trial_overhead_with_fixed_s`, from launch to exit).

Ray's scalability page ("Scalability and Overhead Benchmarks for Ray Tune") runs 10,000 trials
of 1 s on one 16-CPU node in 715.27 s against a 625 s minimum (10,000 x 1 s / 16 slots):
(16 x 715.27 - 10,000 x 1) / 10,000 = 0.144 s a trial, the same formula, with Tune's result
logging as configured there and trials that do nothing but sleep and report. Here a trial also
opens and closes its MLflow run, which Ray's does not have.

Measured at two sizes (50 and 200 trials; quick: 10 and 20), each a fresh sweep into a fresh
store, so the figure's growth with N shows; within a sweep, `by_quarter_s` is the mean per-trial
overhead of each quarter of the trials in start order (a cost that grows with the number of
trials already run, such as a search over the experiment's runs, shows as a rising row).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import load_average, log, run_process

SETTINGS = {
    "full": {"sizes": (50, 200)},
    "quick": {"sizes": (10, 20)},
}
SWEEP_NAME = "bench_trial_overhead"
CONCURRENCY = 1


# One training step of the tiny model, scored on two examples: a trial that is nearly all
# orchestration (also the trial of `store_scale.py`).
TINY_ONE_STEP = [
    "model=tiny-llama",
    "method=lora",
    "train.max_steps=1",
    "train.log_every=1",
    "train.batch_size=2",
    "train.max_new_tokens=4",
    "train.forgetting_windows=1",
    "train.checkpoint_every=null",
    "data.num_train=4",
    "data.num_eval=2",
    "data.num_test=2",
]


def overrides(trials: int, results_dir: str, name: str = SWEEP_NAME) -> list[str]:
    """A sweep of `trials` identical one-step trials of the tiny model."""
    return [
        *TINY_ONE_STEP,
        f"sweep.name={name}",
        f"sweep.seeds={trials}",
        f"sweep.max_concurrent_trials={CONCURRENCY}",
        "sweep.baseline=false",
        "sweep.space=[{method:lora,params:{learning_rate:0.001}}]",
        f"results_dir={results_dir}",
    ]


def figure(runs: list[dict], launched: float, wall: float, concurrency: int = CONCURRENCY) -> dict:
    """The per-trial overhead of one sweep from its runs (each with `start`, `end` in epoch
    seconds and the trial's own `wall_time_s`), its launch time and its wall time."""
    runs = sorted(runs, key=lambda r: r["start"])
    n = len(runs)
    own = sum(r["wall_time_s"] for r in runs)
    first, last = runs[0]["start"], max(r["end"] for r in runs)
    span = last - first
    out = {
        "trials": n,
        "wall_s": wall,
        "span_s": span,
        "own_s": own,
        "own_mean_s": own / n,
        "startup_s": first - launched,
        "end_s": launched + wall - last,
        "per_trial_overhead_s": (concurrency * span - own) / n,
        "per_trial_overhead_with_fixed_s": (concurrency * wall - own) / n,
        "run_open_extra_mean_s": statistics.mean(
            r["end"] - r["start"] - r["wall_time_s"] for r in runs
        ),
    }
    if concurrency == 1:
        # one trial at a time: trial i holds the slot from its start to the next one's
        slots = [b["start"] - a["start"] for a, b in zip(runs, runs[1:], strict=False)]
        slots.append(runs[-1]["end"] - runs[-1]["start"])
        extra = [s - r["wall_time_s"] for s, r in zip(slots, runs, strict=True)]
        quarter = max(1, n // 4)
        out["by_quarter_s"] = [
            statistics.mean(extra[i : i + quarter]) for i in range(0, quarter * 4, quarter)
        ]
        out["gap_mean_s"] = (
            statistics.mean(b["start"] - a["end"] for a, b in zip(runs, runs[1:], strict=False))
            if n > 1
            else 0.0
        )
    return out


def one_sweep(trials: int, work: Path) -> dict:
    """A fresh sweep of `trials` trials into a fresh store; its figure and details."""
    from bench.overhead import sweep_runs, warm_store

    results = work / f"n{trials}"
    warm_store(results)
    args = overrides(trials, str(results))
    ftsweep = Path(sys.executable).with_name("ftsweep")
    command = [str(ftsweep)] if ftsweep.exists() else ["-m", "ftsweep.cli"]
    before = load_average()
    launched = time.time()
    wall, _ = run_process([*command, "sweep", *args], timeout_s=max(1800, 30 * trials))
    after = load_average()
    runs = sweep_runs(args)
    if len(runs) != trials:
        raise RuntimeError(f"the sweep finished {len(runs)} of {trials} trials")
    return {
        **figure(runs, launched, wall),
        "load_average_before": before,
        "load_average_after": after,
    }


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="ftsweep-bench-trial-overhead-"))
    by_size = {}
    try:
        for trials in s["sizes"]:
            log(f"trial_overhead: a sweep of {trials} one-step trials")
            by_size[trials] = one_sweep(trials, work)
            d = by_size[trials]
            log(
                f"trial_overhead: {trials} trials: {d['per_trial_overhead_s']:.3f} s a trial "
                f"(wall {d['wall_s']:.0f} s, own {d['own_mean_s']:.2f} s a trial, "
                f"start-up {d['startup_s']:.1f} s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest = max(by_size)
    details = {
        "model": "tiny-llama",
        "steps_per_trial": 1,
        "concurrency": CONCURRENCY,
        "sizes": list(by_size),
        "by_size": {str(n): d for n, d in by_size.items()},
        "ray_page_s": round((16 * 715.27 - 10_000 * 1.0) / 10_000, 3),
    }
    return {"per_trial_overhead_s": by_size[largest]["per_trial_overhead_s"]}, details
