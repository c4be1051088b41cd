"""sweep_overhead_ratio: N identical short LoRA trials through `ftsweep sweep` over the same
trials run as a bare sequential Python loop of the same training code (no Ray, no MLflow).

Goal <= 1.10 (Ray's scalability guide calls more than 20% too much; we aim at half that).

- sweep side: `ftsweep sweep` with a one-point LoRA space repeated over N seeds
  (`sweep.seeds=N`: the same work N times), into an MLflow store that already exists (a user
  creates it once; its first creation costs seconds of schema migration), as a new sweep each
  time (its own experiment and Ray state);
- bare side: `python -m bench.overhead bare`: the same N trial configs (`ftsweep.space.expand`,
  with the CPU threads the sweep gives a trial) through `ftsweep.trial.recipe.train_and_evaluate`,
  one after the other, recording nothing.

Both are fresh processes timed from launch to exit (interpreter start-up and imports paid on
both sides) and run alternately: sweep, bare, bare, sweep, ... The figure is the median ratio of
adjacent pairs. A trial here trains `steps` steps on 64 examples. The sweep runs without its
base-model measurement (sweep.baseline=false): the bare loop has nothing to compare it with.

The details time the sweep's extra from its MLflow runs: start-up (launch to the first run),
the time a run is open beyond its trial's own wall time (the first includes the worker's
imports), the gaps between runs, and the end (last run closed to exit).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    NoRecord,
    alternate,
    emit,
    median,
    pair_ratios,
    read_result,
    run_process,
)

SETTINGS = {
    "full": {"model": "smollm2-135m", "trials": 4, "steps": 6, "num_eval": 8, "reps": 2},
    "quick": {"model": "smollm2-135m", "trials": 2, "steps": 2, "num_eval": 4, "reps": 1},
}
SWEEP_NAME = "bench_overhead"


def overrides(s: dict, results_dir: str, name: str = SWEEP_NAME) -> list[str]:
    return [
        f"model={s['model']}",
        "method=lora",
        f"train.max_steps={s['steps']}",
        "train.log_every=2",
        "data.num_train=64",
        f"data.num_eval={s['num_eval']}",
        f"sweep.name={name}",
        f"sweep.seeds={s['trials']}",
        "sweep.baseline=false",
        "sweep.space=[{method:lora,params:{learning_rate:0.001}}]",
        f"results_dir={results_dir}",
    ]


def bare_loop(args: list[str]) -> dict:
    """The sweep's trials as a plain loop: what the sweep would cost with no orchestration."""
    import os

    from bench.common import compose, with_train
    from ftsweep.sweep.space import expand
    from ftsweep.trial.recipe import train_and_evaluate

    cfg = compose(args)
    # what run_sweep gives each trial on CPU: the node's CPUs split between concurrent trials
    threads = max(1, (os.cpu_count() or 1) // cfg.sweep.max_concurrent_trials)
    trials = []
    for spec in expand(cfg):
        trial_cfg = with_train(spec.config, threads=threads)
        trials.append(train_and_evaluate(trial_cfg, NoRecord.trial_id, NoRecord(), None))
    return {"trials": trials}


def sweep_runs(args: list[str]) -> list[dict]:
    """Each finished run of the sweep: its metrics and when it was open (epoch seconds)."""
    from bench.common import compose
    from ftsweep.sweep.run import finished_runs_by_trial
    from ftsweep.tracking.store import experiment_name, tracking_uri

    cfg = compose(args)
    runs = finished_runs_by_trial(tracking_uri(cfg), experiment_name(cfg)).values()
    return sorted(
        (
            {
                **dict(r.data.metrics),
                "start": r.info.start_time / 1000,
                "end": r.info.end_time / 1000,
            }
            for r in runs
        ),
        key=lambda r: r["start"],
    )


def timeline(runs: list[dict], launched: float, wall: float) -> dict:
    """Where the sweep's time went outside its trials' own wall time."""
    open_extra = [r["end"] - r["start"] - r["wall_time_s"] for r in runs]
    gaps = [b["start"] - a["end"] for a, b in zip(runs, runs[1:], strict=False)]
    return {
        "startup_s": runs[0]["start"] - launched,
        "first_run_extra_s": open_extra[0],  # the worker's first imports happen in it
        "run_extra_s": median(open_extra[1:]) if len(open_extra) > 1 else None,
        "gap_s": median(gaps) if gaps else None,
        "end_s": launched + wall - runs[-1]["end"],
    }


def warm_store(results_dir: Path) -> None:
    """Create the MLflow store once, as a user's first sweep does."""
    from bench.common import compose
    from ftsweep.tracking.store import get_client, tracking_uri

    results_dir.mkdir(parents=True, exist_ok=True)
    get_client(tracking_uri(compose([f"results_dir={results_dir}"]))).search_experiments()


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="ftsweep-bench-overhead-"))
    sweeps: list[list[dict]] = []
    bares: list[list[dict]] = []
    timelines: list[dict] = []

    def sweep_side() -> float:
        args = overrides(s, str(work / "sweep"), f"{SWEEP_NAME}_{len(sweeps)}")
        ftsweep = Path(sys.executable).with_name("ftsweep")
        command = [str(ftsweep)] if ftsweep.exists() else ["-m", "ftsweep.cli"]
        launched = time.time()
        wall, _ = run_process([*command, "sweep", *args])
        runs = sweep_runs(args)
        if len(runs) != s["trials"]:
            raise RuntimeError(f"the sweep finished {len(runs)} of {s['trials']} trials")
        sweeps.append(runs)
        timelines.append(timeline(runs, launched, wall))
        return wall

    def bare_side() -> float:
        args = overrides(s, str(work / "bare"))
        wall, stdout = run_process(["-m", "bench.overhead", "bare", json.dumps(args)])
        bares.append(read_result(stdout)["trials"])
        return wall

    try:
        warm_store(work / "sweep")
        walls = alternate({"sweep": sweep_side, "bare": bare_side}, s["reps"], "overhead")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = median(pair_ratios(walls["sweep"], walls["bare"]))

    def total(runs: list[list[dict]], key: str) -> list[float]:
        return [sum(t[key] for t in trials) for trials in runs]

    extra = [a - b for a, b in zip(walls["sweep"], walls["bare"], strict=True)]
    details = {
        "model": s["model"],
        "trials": s["trials"],
        "steps_per_trial": s["steps"],
        "reps": s["reps"],
        "wall_s": walls,
        "extra_s": extra,
        # the bare loop's wall time at which this extra would be 10% of it
        "bare_wall_for_goal_s": 10 * median(extra),
        # time outside the trials' own wall_time_s (load + train + eval), per process
        "outside_trials_s": {
            "sweep": [
                w - t for w, t in zip(walls["sweep"], total(sweeps, "wall_time_s"), strict=True)
            ],
            "bare": [
                w - t for w, t in zip(walls["bare"], total(bares, "wall_time_s"), strict=True)
            ],
        },
        "sweep_timeline": {
            k: median([t[k] for t in timelines if t[k] is not None] or [0.0]) for k in timelines[0]
        },
        # the trials' own wall and training time in the sweep over the same trials bare
        "in_trial_ratio": median(
            pair_ratios(total(sweeps, "wall_time_s"), total(bares, "wall_time_s"))
        ),
        "train_time_ratio": median(
            pair_ratios(total(sweeps, "train_time_s"), total(bares, "train_time_s"))
        ),
        "trial_wall_s": {
            "sweep": total(sweeps, "wall_time_s"),
            "bare": total(bares, "wall_time_s"),
        },
    }
    return {"sweep_overhead_ratio": ratio}, details


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"]:
        emit(bare_loop(json.loads(sys.argv[2])))
