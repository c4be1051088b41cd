"""The sweep: Ray Tune runs every trial of a search space, each recorded as one MLflow run.

Trials are named by their stable trial id (no timestamps, no random values), Ray's experiment
state lives under RESULTS/ray, and running the same command again after a crash or a kill
restores it: finished trials are not rerun, unfinished ones start again in their own MLflow run.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

from ftsweep.config import Config, validate
from ftsweep.space import TrialSpec, expand
from ftsweep.tracking import (
    TAG_TRIAL_ID,
    ensure_experiment,
    experiment_name,
    get_client,
    mark_abandoned_runs,
    tracking_uri,
)


@dataclass
class SweepOutcome:
    experiment: str
    tracking_uri: str
    trials: list[TrialSpec]
    results: dict[str, dict]  # trial id -> last reported metrics
    errors: dict[str, str]  # trial id -> error text
    interrupted: bool


def ray_experiment_name(cfg: Config, specs: list[TrialSpec]) -> str:
    # A changed search space gets its own Ray state; MLflow still dedupes by trial id.
    digest = hashlib.sha1("\n".join(s.trial_id for s in specs).encode()).hexdigest()[:8]
    return f"{cfg.sweep.name}-{digest}"


def _trainable(config: dict, invocation_id: str) -> None:
    """What Ray Tune runs per trial: the plain trial function, reporting to Tune."""
    from ray import tune

    from ftsweep.trial import run_trial

    spec = config["trial"]
    cfg = validate(spec["config"])
    result = run_trial(cfg, trial_id=spec["trial_id"], report=tune.report, invocation_id=invocation_id)
    # The final report comes after the MLflow run is closed: Tune may end the trial at any report.
    final = {**result.metrics, "step": cfg.train.max_steps}
    if result.stop_reason == "already_recorded":
        final["already_recorded"] = 1.0
    tune.report(final)


def trial_resources(cfg: Config, total_cpus: int) -> dict[str, float]:
    """One trial's share: GPUs from the hardware group, CPUs split between concurrent trials."""
    concurrent = cfg.sweep.max_concurrent_trials
    cpus = cfg.sweep.cpus_per_trial or max(1, total_cpus // concurrent)
    resources: dict[str, float] = {"cpu": cpus}
    if cfg.hardware.device == "cuda":
        resources["gpu"] = cfg.hardware.devices_per_trial
    return resources


def _start_ray(cfg: Config) -> int:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return int(ray.cluster_resources().get("CPU", 1))


def run_sweep(cfg: Config, console=None) -> SweepOutcome:
    """Run (or resume) the sweep named in cfg.sweep and return what each trial reported."""
    from ray import tune

    from ftsweep.progress import ProgressCallback, SweepProgress

    specs = expand(cfg)
    uri = tracking_uri(cfg)
    results_path = cfg.results_path
    results_path.mkdir(parents=True, exist_ok=True)
    client = get_client(uri)
    experiment_id = ensure_experiment(client, experiment_name(cfg), results_path / "mlartifacts")
    abandoned = mark_abandoned_runs(client, experiment_id)

    total_cpus = _start_ray(cfg)
    threads = int(trial_resources(cfg, total_cpus)["cpu"])
    trials = [
        {"trial_id": s.trial_id, "run_name": s.run_name, "config": _with_threads(s.config, threads)}
        for s in specs
    ]
    invocation_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, invocation_id=invocation_id),
        trial_resources(cfg, total_cpus),
    )
    storage = str((results_path / "ray").resolve())
    name = ray_experiment_name(cfg, specs)
    progress = SweepProgress(specs, console=console, resumed_from=abandoned)
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
        callbacks=[ProgressCallback()],
        verbose=0,  # the progress callback is the display
    )
    path = os.path.join(storage, name)
    if tune.Tuner.can_restore(path):
        progress.note(f"resuming sweep state from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=cfg.sweep.max_concurrent_trials,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=run_config,
        )
    with progress:
        grid = tuner.fit()
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for result in grid:
        trial_id = result.config["trial"]["trial_id"]
        if result.error is not None:
            errors[trial_id] = f"{type(result.error).__name__}: {result.error}".splitlines()[0]
        else:
            results[trial_id] = dict(result.metrics or {})
    interrupted = len(results) + len(errors) < len(specs) or progress.interrupted
    return SweepOutcome(experiment_name(cfg), uri, specs, results, errors, interrupted)


def _with_threads(cfg: Config, threads: int) -> dict:
    data = cfg.model_dump()
    if cfg.hardware.device == "cpu" and not cfg.train.threads:
        data["train"]["threads"] = threads
    return data


def finished_runs_by_trial(uri: str, experiment: str) -> dict[str, object]:
    """The FINISHED MLflow run of each trial id in an experiment."""
    client = get_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs([found.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=10000)
    return {r.data.tags.get(TAG_TRIAL_ID): r for r in runs}
