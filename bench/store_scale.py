"""report_s_10k_runs: what reading a long-kept tracking store costs: `ftsweep report`, the
sweep's summary and a resume of the sweep, over one experiment holding 10,000 runs.

The store (MLflow's SQLite, in a temporary folder) is built, untimed, to look like a real
sweep's:

- a real sweep first: `ftsweep sweep` of two one-step trials of the tiny random model with its
  untrained base model measured (`sweep.baseline=true`), whose two trials are two points of the
  big grid below (same sweep name, same knobs, seeds 0 and 1), so they are that grid's own
  trials;
- the big grid, a sweep file in the temporary folder: LoRA, `POINTS / (4 x SEEDS)` learning
  rates x ranks 4, 8, 16, 32 (alpha = 2 x rank) x SEEDS seeds = POINTS trials, each named by the
  trial id `ftsweep.sweep.space.expand` gives it;
- every grid trial the real sweep did not run becomes a FINISHED run cloned from a real trial's
  run through MLflow's client (`create_run` with its tags, one `log_batch` of its params and its
  metrics' whole histories, `set_terminated`): its own trial id, run name and params
  (`run_params`, what a run of that trial logs), the real run's tags and metrics, a start and end
  one real trial's length apart, and the real run's per-example scores file
  (`scores/scores.json`, which the report reads to compare runs) copied into its artifact
  folder. The base model's run stays the real one: POINTS trial runs + 1.

What is timed, each in a fresh process, in this order:

- `report_s`: `ftsweep report` over the store (read every run, analyse, write report.md and
  .html and the plots);
- `summary_s`: the sweep's end-of-sweep summary (`ftsweep.sweep.summary.print_summary`, what
  `ftsweep sweep` prints last) for the grid's trials, timed inside the process around the call;
- `resume_s`: `ftsweep sweep` of the same grid again, launch to exit. The store holds every
  trial but Ray's state folder of this sweep does not exist (the runs were not made by Ray
  here, as after an edited sweep file or a results folder moved to another machine): the
  sweep finds every trial's FINISHED run in one search of the store, reports it RECORDED and
  gives Ray nothing to run (`ftsweep.sweep.run`). Then `resume_again_s`: the same command once
  more, which must launch nothing either. Details only.

report_s_10k_runs = report_s + summary_s + resume_s at 10,000 runs. The same is measured at
1,000 runs (quick: 200 and 1,000), and the details say what each part costs at each size. A
resume still running after RESUME_LIMIT_S is killed (its process group: the sweep and its Ray
instance) and recorded as cut, with the trials it had reported by then; the figure is then not
measured (null). The resume's progress lines split it: `resume_first_recorded_s`, from the
display's start to the first trial reported (Ray's start and Tune's generation of the grid's
trials), and `resume_per_trial_s`, the mean time between trials after it.

Also, untimed in the figure: `trial_lookup_s`, what each trial's start asks the store (its
experiment by name, its runs by trial id, as `TrialRun` does), the mean over 50 trials spread
over the grid, at each size: the part of every trial's overhead that grows with the store.

Checked, not timed: that none is dropped and none retrained: the report's run count (its
"runs" line), the summary's "N/M trials finished", the resume's count of trials reported
RECORDED (and none launched by the second resume), and that the store holds the same runs after
both resumes as before (no new run, none reopened: the same invocation tag and end time on
each).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import emit, load_average, log, read_result, run_process
from bench.trial_overhead import TINY_ONE_STEP

SETTINGS = {
    "full": {"sizes": (1_000, 10_000)},
    "quick": {"sizes": (200, 1_000)},
}
SWEEP_NAME = "bench_store"
SEEDS = 10
RANKS = (4, 8, 16, 32)
REAL_TRIALS = 2  # the real sweep: the grid's first point, seeds 0 and 1
# A resume still running after this is killed and recorded as cut (no figure): Ray's grid
# generation costs O(trials^2) (see the README), hours at 10,000 on 2 cores.
RESUME_LIMIT_S = 1200


def learning_rates(count: int) -> list[float]:
    """`count` learning rates, log-spaced from 1e-5 to 1e-2 (rounded to 5 figures)."""
    if count == 1:
        return [1e-3]
    return [float(f"{1e-5 * 1000 ** (i / (count - 1)):.5g}") for i in range(count)]


def grid_points(points: int) -> tuple[list[float], int]:
    """The learning rates and seeds of a grid of `points` trials (ranks x rates x seeds)."""
    per_rate = len(RANKS) * SEEDS
    if points % per_rate:
        raise ValueError(f"{points} trials: a multiple of {per_rate} (ranks x seeds) is needed")
    return learning_rates(points // per_rate), SEEDS


def sweep_file(path: Path, rates: list[float], ranks, seeds: int) -> Path:
    """A grid sweep file: LoRA over the given learning rates x ranks x seeds."""
    import yaml

    doc = {
        "sweep": {
            "name": SWEEP_NAME,
            "description": f"{len(rates) * len(ranks) * seeds} LoRA trials (store scale)",
            "algorithm": "grid",
            "seeds": seeds,
            "baseline": True,
            "space": [
                {
                    "method": "lora",
                    "params": {
                        "learning_rate": list(rates),
                        "lora_r": list(ranks),
                        "lora_alpha_ratio": 2,
                    },
                }
            ],
        }
    }
    path.write_text("# @package _global_\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def overrides(sweep: Path, results_dir: Path) -> list[str]:
    """The tiny one-step trial of `trial_overhead.py`, over the given sweep file."""
    return [
        *TINY_ONE_STEP,
        f"sweep={sweep}",
        f"results_dir={results_dir}",
    ]


def ftsweep_command() -> list[str]:
    ftsweep = Path(sys.executable).with_name("ftsweep")
    return [str(ftsweep)] if ftsweep.exists() else ["-m", "ftsweep.cli"]


# --- building the store (in a worker process, untimed) ------------------------------------------


def clone_runs(args: list[str]) -> dict:
    """Every grid trial of the composed sweep without a run becomes a FINISHED clone of the
    store's last real trial run (see the module's docstring); returns counts and seconds."""
    from mlflow.entities import Metric, Param

    from bench.common import compose
    from ftsweep.sweep.space import expand
    from ftsweep.tracking.queries import search_all
    from ftsweep.tracking.record import TAG_RUN_ID, TAG_TRIAL_ID, run_params
    from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

    started = time.perf_counter()
    cfg = compose(args)
    specs = expand(cfg)
    expanded = time.perf_counter() - started
    client = get_client(tracking_uri(cfg)).raw
    experiment_id = client.get_experiment_by_name(experiment_name(cfg)).experiment_id
    runs = search_all(client, [experiment_id], "attributes.status = 'FINISHED'")
    recorded = {r.data.tags.get(TAG_TRIAL_ID) for r in runs}
    trials = [r for r in runs if r.data.params.get("method") != "none"]
    # the last real trial: the first one's run also holds the worker's first imports
    template = max(trials, key=lambda r: r.info.start_time)
    history = [
        m
        for key in template.data.metrics
        for m in client.get_metric_history(template.info.run_id, key)
    ]
    length = template.info.end_time - template.info.start_time
    scores = Path(client.download_artifacts(template.info.run_id, "scores/scores.json"))
    kept_tags = {
        k: v
        for k, v in template.data.tags.items()
        if not k.startswith("mlflow.") and k not in (TAG_TRIAL_ID, TAG_RUN_ID)
    }
    clock = max(r.info.end_time for r in runs)  # clones start after the real runs, in grid order
    made = 0
    for spec in specs:
        if spec.trial_id in recorded:
            continue
        tags = kept_tags | {TAG_TRIAL_ID: spec.trial_id, TAG_RUN_ID: "bench-clone"}
        run = client.create_run(experiment_id, start_time=clock, tags=tags, run_name=spec.run_name)
        run_id = run.info.run_id
        metrics = [
            Metric(m.key, m.value, clock + m.timestamp - template.info.start_time, m.step)
            for m in history
        ]
        params = [Param(k, str(v)) for k, v in run_params(spec.config).items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id, status="FINISHED", end_time=clock + length)
        target = Path(run.info.artifact_uri.removeprefix("file://")) / "scores"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scores, target / "scores.json")
        clock += length + 50  # a 50 ms gap before the next, as between a sweep's trials
        made += 1
        if made % 1000 == 0:
            log(f"store_scale: {made} runs cloned ({time.perf_counter() - started:.0f} s)")
    return {
        "specs": len(specs),
        "real": len(recorded & {s.trial_id for s in specs}),
        "cloned": made,
        "expand_s": expanded,
        "build_s": time.perf_counter() - started,
    }


def store_state(args: list[str]) -> dict:
    """What the store holds: runs by status, trial runs, and each run's invocation tag."""
    from bench.common import compose
    from ftsweep.tracking.queries import experiment_runs
    from ftsweep.tracking.record import TAG_RUN_ID, TAG_TRIAL_ID
    from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

    cfg = compose(args)
    runs = experiment_runs(get_client(tracking_uri(cfg)), experiment_name(cfg))
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r.info.status] = statuses.get(r.info.status, 0) + 1
    return {
        "runs": len(runs),
        "trial_runs": sum(r.data.params.get("method") != "none" for r in runs),
        "statuses": statuses,
        "trial_ids": len({r.data.tags.get(TAG_TRIAL_ID) for r in runs}),
        "invocations": sorted(
            (r.info.run_id, r.data.tags.get(TAG_RUN_ID, ""), r.info.end_time) for r in runs
        ),
    }


def lookup(args: list[str], sample: int = 50) -> dict:
    """What each trial's start pays the store: its experiment by name and its runs by trial id
    (`TrialRun`), for `sample` trials spread over the grid; mean seconds per trial."""
    from bench.common import compose
    from ftsweep.sweep.space import expand
    from ftsweep.tracking.record import find_trial_runs
    from ftsweep.tracking.store import ensure_experiment, experiment_name, get_client, tracking_uri

    cfg = compose(args)
    specs = expand(cfg)
    chosen = specs[:: max(1, len(specs) // sample)][:sample]
    client = get_client(tracking_uri(cfg))
    ensure_experiment(client, experiment_name(cfg), None)  # the first call opens the store
    started = time.perf_counter()
    found = 0
    for spec in chosen:
        experiment_id = ensure_experiment(client, experiment_name(cfg), None)
        found += len(find_trial_runs(client, experiment_id, spec.trial_id))
    seconds = (time.perf_counter() - started) / len(chosen)
    return {"lookup_s": seconds, "trials": len(chosen), "runs_found": found}


def summary(args: list[str]) -> dict:
    """The sweep's end-of-sweep summary over the store, as `ftsweep sweep` prints it last,
    timed around the call; returns its seconds and the trials it counted finished."""
    import io

    from rich.console import Console

    from bench.common import compose
    from ftsweep.sweep.run import SweepOutcome, check_sweep
    from ftsweep.sweep.summary import print_summary
    from ftsweep.tracking.store import experiment_name, tracking_uri

    cfg = compose(args)
    specs = check_sweep(cfg)  # what run_sweep hands the summary
    outcome = SweepOutcome(experiment_name(cfg), tracking_uri(cfg), specs, {}, {}, False)
    text = io.StringIO()
    console = Console(file=text, width=200)
    started = time.perf_counter()
    print_summary(console, cfg, outcome)
    seconds = time.perf_counter() - started
    return {"summary_s": seconds, "finished": finished_count(text.getvalue())}


def finished_count(text: str) -> tuple[int, int] | None:
    """(finished, trials) from a summary's "best run per method (N/M trials finished)"."""
    found = re.search(r"\((\d+)/(\d+) trials finished\)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def report_runs(report_md: str) -> dict | None:
    """The run counts the report states ("N runs recorded in STORE: U used, L left out")."""
    found = re.search(
        r"([\d,]+) runs? recorded in .*?: ([\d,]+) used, ([\d,]+) left out", report_md
    )
    if not found:
        return None
    recorded, used, left_out = (int(g.replace(",", "")) for g in found.groups())
    return {"recorded": recorded, "used": used, "left_out": left_out}


# --- measuring --------------------------------------------------------------------------------


def build(points: int, work: Path) -> tuple[list[str], dict]:
    """A store of `points` grid trials under `work` (see the module's docstring)."""
    rates, seeds = grid_points(points)
    results = work / "results"
    small = sweep_file(work / "real.yaml", rates[:1], RANKS[:1], REAL_TRIALS)
    big = sweep_file(work / "big.yaml", rates, RANKS, seeds)
    started = time.perf_counter()
    run_process([*ftsweep_command(), "sweep", *overrides(small, results)], timeout_s=1800)
    real_s = time.perf_counter() - started
    args = overrides(big, results)
    _, stdout = run_process(["-m", "bench.store_scale", "clone", json.dumps(args)], timeout_s=7200)
    built = read_result(stdout)
    return args, {"real_sweep_s": real_s, **built}


def measure_size(points: int, work: Path) -> dict:
    log(f"store_scale: building a store of {points:,} runs")
    args, built = build(points, work)
    log(
        f"store_scale: {built['cloned']:,} runs cloned in {built['build_s']:.0f} s "
        f"(real sweep {built['real_sweep_s']:.0f} s)"
    )
    _, stdout = run_process(["-m", "bench.store_scale", "state", json.dumps(args)])
    before = read_result(stdout)
    load = {"before": load_average()}

    _, stdout = run_process(["-m", "bench.store_scale", "lookup", json.dumps(args)])
    looked_up = read_result(stdout)
    log(f"store_scale: {points:,} runs: a trial's look-up {looked_up['lookup_s'] * 1000:.0f} ms")

    report_s, stdout = run_process([*ftsweep_command(), "report", *args], timeout_s=7200)
    report_md = Path(stdout.split("report:", 1)[1].split()[0]).read_text()
    log(f"store_scale: {points:,} runs: report {report_s:.1f} s")

    _, stdout = run_process(
        ["-m", "bench.store_scale", "summary", json.dumps(args)], timeout_s=3600
    )
    summary_result = read_result(stdout)
    log(f"store_scale: {points:,} runs: summary {summary_result['summary_s']:.1f} s")

    resume = timed_resume(args, RESUME_LIMIT_S)
    resume_s, stdout = resume["wall_s"], resume["stdout"]
    recorded = stdout.count(": RECORDED")
    launched = stdout.count(": RUNNING")
    if resume_s is None:
        log(
            f"store_scale: {points:,} runs: resume cut at {RESUME_LIMIT_S:,} s with "
            f"{recorded:,} of {points:,} trials recorded"
        )
    else:
        log(f"store_scale: {points:,} runs: resume {resume_s:.1f} s ({recorded:,} recorded)")
    load["after"] = load_average()
    times = progress_times(stdout, ": RECORDED")
    out = {
        "runs": before["runs"],
        "trial_runs": before["trial_runs"],
        "build": built,
        "trial_lookup_s": looked_up["lookup_s"],
        "trial_lookup_runs_found": f"{looked_up['runs_found']} of {looked_up['trials']}",
        "report_s": report_s,
        "report_run_count": report_runs(report_md),
        "summary_s": summary_result["summary_s"],
        "summary_finished": summary_result["finished"],
        "resume_s": resume_s,
        "resume_limit_s": RESUME_LIMIT_S,
        "resume_recorded": recorded,
        "resume_launched": launched,
        # the progress display's clock: when the first trial was reported, and the mean time
        # between trials after it (Ray's pass over a recorded trial)
        "resume_first_recorded_s": times[0] if times else None,
        "resume_per_trial_s": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
        "resume_summary_finished": finished_count(stdout),
        "total_s": None if resume_s is None else report_s + summary_result["summary_s"] + resume_s,
        "load_average": load,
    }
    if resume_s is not None:
        # the same command once more: nothing to launch either
        again_s, again = run_process([*ftsweep_command(), "sweep", *args], timeout_s=7200)
        log(f"store_scale: {points:,} runs: resume again {again_s:.1f} s")
        out |= {
            "resume_again_s": again_s,
            "resume_again_launched": again.count(": RUNNING"),
            "resume_again_recorded": again.count(": RECORDED"),
            "resume_again_summary_finished": finished_count(again),
        }
    _, stdout = run_process(["-m", "bench.store_scale", "state", json.dumps(args)])
    after = read_result(stdout)
    return out | {
        "resume_new_runs": after["runs"] - before["runs"],
        "resume_changed_runs": sum(
            a != b for a, b in zip(before["invocations"], after["invocations"], strict=False)
        ),
        "statuses_before": before["statuses"],
        "statuses_after": after["statuses"],
    }


def progress_times(stdout: str, status: str) -> list[float]:
    """The progress display's seconds ("[   12s] TRIAL (NAME): STATUS") of each line with
    `status`, in order."""
    return [
        float(m.group(1))
        for m in re.finditer(r"^\[\s*(\d+)s\] .*" + re.escape(status), stdout, re.M)
    ]


def timed_resume(args: list[str], limit_s: float) -> dict:
    """`ftsweep sweep ARGS`, launch to exit, in its own process group; past `limit_s` the
    group (the sweep and the Ray instance it started) is killed and the wall is None."""
    import os
    import signal
    import subprocess

    from bench.common import ROOT, worker_env

    command = ftsweep_command()
    if not command[0].startswith("/"):
        command = [sys.executable, *command]
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "sweep", *args],
            cwd=ROOT,
            env=worker_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=limit_s)
            wall = time.perf_counter() - started
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, wall = None, None
        output.seek(0)
        text = output.read()
    if code not in (0, None):
        tail = "\n".join(text.strip().splitlines()[-25:])
        raise RuntimeError(f"ftsweep sweep (resume) exited {code}:\n{tail}")
    return {"wall_s": wall, "stdout": text}


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    by_size = {}
    for points in s["sizes"]:
        work = Path(tempfile.mkdtemp(prefix="ftsweep-bench-store-"))
        try:
            by_size[points] = measure_size(points, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    largest = max(by_size)
    small = min(by_size)
    growth = {
        part: by_size[largest][part] / by_size[small][part]
        for part in ("report_s", "summary_s", "resume_s", "total_s", "trial_lookup_s")
        if by_size[small][part] and by_size[largest][part]
    }
    details = {
        "model": "tiny-llama",
        "sizes": list(by_size),
        "by_size": {str(n): d for n, d in by_size.items()},
        # how much each part grows for 10x the runs (1.0: constant, 10: linear)
        "growth": growth,
        "growth_exponent": {
            k: math.log(v) / math.log(largest / small) for k, v in growth.items() if v > 0
        },
    }
    return {"report_s_10k_runs": by_size[largest]["total_s"]}, details


if __name__ == "__main__":
    commands = {"clone": clone_runs, "state": store_state, "summary": summary, "lookup": lookup}
    if sys.argv[1:2] and sys.argv[1] in commands:
        emit(commands[sys.argv[1]](json.loads(sys.argv[2])))
