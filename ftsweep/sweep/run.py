"""The sweep: Ray Tune runs every trial of a search space, each recorded as one MLflow run.

Trials are named by their stable trial id (no timestamps, no random values), Ray's experiment
state lives under RESULTS/ray, and running the same command again after a crash or a kill
restores it: finished trials are not rerun, unfinished ones start again in their own MLflow run.

A grid trial whose FINISHED run is already in the store is reported from it by the driver, out of
one search of the experiment, and never handed to Ray: on a long-kept store (an edited sweep
file, a results folder moved to another machine) giving Ray 10,000 recorded trials cost about
0.12 s each for nothing. Under a scheduler they still go through Tune, whose rungs compare the
trials it has seen.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ftsweep.config import Config, ConfigError, validate
from ftsweep.sweep.resources import start_ray, trial_resources, with_threads
from ftsweep.sweep.space import TrialSpec, check_ranges, expand
from ftsweep.sweep.trainable import resources_for, trainable, trial_of
from ftsweep.sweep.tuner import make_tuner, ray_experiment_name
from ftsweep.tracking.queries import experiment_runs
from ftsweep.tracking.record import TAG_TRIAL_ID, find_trial_runs, mark_abandoned_runs
from ftsweep.tracking.store import ensure_experiment, experiment_name, get_client, tracking_uri
from ftsweep.trial.checkpoints import state_location
from ftsweep.trust import private_dir


@dataclass
class SweepOutcome:
    experiment: str
    tracking_uri: str
    trials: list[TrialSpec]
    results: dict[str, dict]  # trial id -> last reported metrics
    errors: dict[str, str]  # trial id -> error text
    interrupted: bool


def check_sweep(cfg: Config) -> list[TrialSpec]:
    """Everything a sweep asks for, validated before Ray starts: the grid's trial list."""
    if not cfg.sweep.space:
        raise ConfigError("sweep.space is empty: choose a sweep with sweep=NAME (see sweeps/)")
    if cfg.sweep.scheduler == "asha" and cfg.train.eval_every is None:
        raise ConfigError(
            "sweep.scheduler=asha needs train.eval_every (steps between the evaluations its rungs compare)"
        )
    if cfg.sweep.algorithm == "grid":
        specs = expand(cfg)
        refuse_what_cannot_fit(cfg, specs)
        return specs
    check_ranges(cfg.sweep.space)
    return []


def refuse_what_cannot_fit(cfg: Config, specs: list[TrialSpec]) -> None:
    """The memory plan's verdict on every trial, before anything runs (sweep.force overrides)."""
    from ftsweep.planning.plan import check_fits

    if cfg.sweep.force:
        return
    for spec in specs:
        reason = check_fits(spec.config)
        if reason:
            raise ConfigError(f"{spec.run_name}: {reason} (sweep.force=true launches it anyway)")


def run_sweep(cfg: Config, console=None) -> SweepOutcome:
    """Run (or resume) the sweep named in cfg.sweep and return what each trial reported."""
    from ray import tune

    from ftsweep.sweep.progress import SweepProgress

    specs = check_sweep(cfg)
    uri = tracking_uri(cfg)
    results_path = cfg.results_path
    # RESULTS holds what is loaded back (Ray's pickled state, checkpoints): the user's alone.
    private_dir(results_path, "results_dir")
    client = get_client(uri)
    experiment_id = ensure_experiment(client, experiment_name(cfg), results_path / "mlartifacts")
    abandoned = mark_abandoned_runs(client, experiment_id)

    resources = trial_resources(cfg, start_ray(cfg))
    threads = int(resources["cpu"])
    base = with_threads(cfg, threads)
    trials = {
        s.trial_id: {
            "trial_id": s.trial_id,
            "run_name": s.run_name,
            "config": with_threads(s.config, threads),
        }
        for s in specs
    }
    invocation_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    per_trial = tune.with_resources(
        tune.with_parameters(trainable, base=base, invocation_id=invocation_id, grid=trials),
        resources_for(base, resources, trials),
    )
    # Intermediate reports carry train loss or eval loss, not always both; ASHA and the searcher
    # skip a report without their metric, and every final report has it.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # MLflow is the record. Of Tune's own per-trial files only result.json is kept (its result
    # grid reads it); the TensorBoard logger would import torch into this process (1.6 s of
    # every start) and the CSV one duplicates the JSON.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    if cfg.storage:
        storage = state_location(cfg, "ray")  # an object store: its own access control
    else:
        storage = str(private_dir(results_path.resolve() / "ray", "Ray's state folder"))
    progress = SweepProgress(specs, console=console, resumed_from=abandoned)
    name = ray_experiment_name(cfg, specs)
    recorded = recorded_before(cfg, uri, specs)
    # Ray restores its own saved trials and may rerun any of them: `trials` (every one) travels
    # with the trainable; only a new Tuner's grid leaves the recorded ones out.
    pending = {k: v for k, v in trials.items() if k not in recorded}
    # With every trial recorded there is nothing for Tune to do, even with its state saved.
    tuner = None
    if pending or not specs:
        tuner = make_tuner(cfg, per_trial, pending, base, storage, name, progress)
    if cfg.sweep.baseline:
        _record_baselines(base, [t["config"] for t in trials.values()], resources, progress)
    base_cfg = validate(base)
    with progress:
        report_recorded(progress, recorded)
        grid = tuner.fit() if tuner is not None else None
    if grid is None:
        return _outcome(cfg, uri, specs, [], base_cfg, progress.interrupted, trials, recorded)
    close_stopped_trials(client, experiment_id, grid, base_cfg, progress.stopped_trials(), trials)
    interrupted = progress.interrupted or grid.num_terminated + grid.num_errors < len(grid)
    if not interrupted:
        # Every trial has ended: a run still RUNNING lost its worker before it could close.
        mark_abandoned_runs(client, experiment_id, reason="worker_lost")
    return _outcome(cfg, uri, specs, grid, base_cfg, interrupted, trials, recorded)


def recorded_before(cfg: Config, uri: str, specs: list[TrialSpec]) -> dict[str, object]:
    """The FINISHED runs of the grid's trials, by trial id, that the driver reports itself (see
    the module docstring): none for a searcher's sweep or one under a scheduler."""
    if not specs or cfg.sweep.scheduler != "none":
        return {}
    finished = finished_runs_by_trial(uri, experiment_name(cfg))
    return {s.trial_id: finished[s.trial_id] for s in specs if s.trial_id in finished}


def report_recorded(progress, recorded: dict[str, object]) -> None:
    """Recorded trials on the display, as Tune's trials report theirs."""
    if recorded:
        progress.note(f"{len(recorded)} trial(s) already recorded in MLflow: not run again")
    fields = ("step", "quality", "wall_time_s")
    progress.update_all(
        {
            trial_id: {"status": "RECORDED", **{k: run.data.metrics.get(k) for k in fields}}
            for trial_id, run in recorded.items()
        }
    )


def close_stopped_trials(
    client, experiment_id: str, grid, base_cfg: Config, stopped: set, trials: dict
) -> None:
    """Runs of trials the scheduler stopped that their processes left RUNNING, closed as early
    stops (see trial.run.close_stopped_run)."""
    from ftsweep.trial.run import close_stopped_run

    for result in grid:
        spec = trial_of(result.config, base_cfg, trials)
        if spec.trial_id not in stopped:
            continue
        for run in find_trial_runs(client, experiment_id, spec.trial_id):
            if run.info.status == "RUNNING":
                close_stopped_run(spec.config, run)


def _outcome(
    cfg, uri, specs, grid, base_cfg: Config, interrupted: bool, trials: dict, recorded: dict
) -> SweepOutcome:
    results: dict[str, dict] = {
        trial_id: {**run.data.metrics, "stop_reason": "already_recorded", "already_recorded": 1.0}
        for trial_id, run in recorded.items()
    }
    errors: dict[str, str] = {}
    for result in grid:
        trial_id = trial_of(result.config, base_cfg, trials).trial_id
        if result.error is not None:
            errors[trial_id] = f"{type(result.error).__name__}: {result.error}".splitlines()[0]
        else:
            results[trial_id] = dict(result.metrics or {})
    ran = specs or [trial_of(r.config, base_cfg, trials) for r in grid]
    return SweepOutcome(experiment_name(cfg), uri, ran, results, errors, interrupted)


def _measure_baseline(config: dict) -> dict[str, float]:
    from ftsweep.trial.baseline import record_baseline

    return record_baseline(validate(config))


def _record_baselines(
    base: dict, trial_configs: list[dict], resources: dict[str, float], progress
) -> None:
    """The base model's quality on each (model, task) the sweep trains, measured once each
    where a trial would run (a GPU on a cluster), before any trial starts."""
    import ray

    from ftsweep.trial.baseline import baseline_trial_id

    by_id: dict[str, dict] = {}
    for config in trial_configs or [base]:
        by_id.setdefault(baseline_trial_id(validate(config)), config)
    measure = ray.remote(_measure_baseline).options(
        num_cpus=resources["cpu"], num_gpus=resources.get("gpu", 0), max_retries=0
    )
    for config in by_id.values():
        cfg = validate(config)
        progress.note(f"base model: measuring {cfg.model.name} on {cfg.data.name} (untrained)")
        metrics = ray.get(measure.remote(config))
        progress.note(f"base model: quality {metrics['quality']:.3f} before fine-tuning")


def finished_runs_by_trial(uri: str, experiment: str) -> dict[str, object]:
    """The FINISHED MLflow run of each trial id in an experiment."""
    runs = experiment_runs(get_client(uri), experiment, "attributes.status = 'FINISHED'")
    return {r.data.tags.get(TAG_TRIAL_ID): r for r in runs}
