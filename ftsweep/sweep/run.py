"""The sweep: Ray Tune runs every trial of a search space, each recorded as one MLflow run.

Trials are named by their stable trial id (no timestamps, no random values), Ray's experiment
state lives under RESULTS/ray, and running the same command again after a crash or a kill
restores it: finished trials are not rerun, unfinished ones start again in their own MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

from ftsweep.config import Config, ConfigError, validate
from ftsweep.sweep.space import TrialSpec, check_ranges, define_by_run, expand, spec_from_sample
from ftsweep.tracking.record import (
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
    """Ray's state folder: one per search space, so an edited sweep starts afresh in Ray while
    MLflow still finds every trial that was already recorded by its id."""
    if cfg.sweep.algorithm == "grid":
        identity = "\n".join(s.trial_id for s in specs)
    else:
        identity = json.dumps(
            [
                cfg.sweep.algorithm,
                cfg.sweep.num_samples,
                [s.model_dump() for s in cfg.sweep.space],
                cfg.train.model_dump(),
            ],
            sort_keys=True,
            default=str,
        )
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    return f"{cfg.sweep.name}-{digest}"


# Failures worth a retry (sweep.max_failures): the worker or the network went away, not the trial.
TRANSIENT_ERRORS = (
    "RayActorError",
    "ActorDiedError",
    "WorkerCrashedError",
    "NodeDiedError",
    "ConnectionError",
    "TimeoutError",
)


def is_transient(exc: BaseException) -> bool:
    return any(cls.__name__ in TRANSIENT_ERRORS for cls in type(exc).__mro__)


def _trial_of(config: dict, base: Config) -> TrialSpec:
    if "trial" in config:  # grid: the whole trial config travels in the param space
        spec = config["trial"]
        cfg = validate(spec["config"])
        return TrialSpec(spec["trial_id"], spec["run_name"], cfg)
    return spec_from_sample(base, config)  # random / optuna: a sample of the conditional space


def _trainable(config: dict, base: dict, invocation_id: str) -> None:
    """What Ray Tune runs per trial: the plain trial function, reporting to Tune.

    A failure that retrying cannot fix (divergence, out of memory, a bug) is recorded FAILED in
    MLflow and ends the trial normally, so Ray does not retry it; a transient one is raised
    for Ray to retry up to sweep.max_failures.
    """
    from ray import tune

    from ftsweep.trial.outcome import stop_reason_for
    from ftsweep.trial.run import run_trial, skip_trial

    spec = _trial_of(config, validate(base))
    cfg = spec.config
    reason = _budget_block(cfg, spec.trial_id)
    if reason:
        skip_trial(cfg, spec.trial_id, spec.run_name, invocation_id, reason)
        tune.report(
            {"skipped": 1.0, "stop_reason": "skipped_budget", SCHEDULE_METRIC: float("inf")}
        )
        return

    def report(metrics: dict) -> None:
        # Optuna and ASHA read their metric from every report: train-loss-only reports go to
        # MLflow and the progress display only when neither is in use.
        if SCHEDULE_METRIC in metrics or (
            cfg.sweep.algorithm == "grid" and cfg.sweep.scheduler == "none"
        ):
            tune.report(metrics)

    try:
        # A worker group's workers report to Tune through Ray Train's own callback.
        result = run_trial(
            cfg,
            trial_id=spec.trial_id,
            report=report,
            invocation_id=invocation_id,
            cpus_per_worker=cpus_per_worker(cfg),
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        error = f"{type(exc).__name__}: {exc}"[:500]
        tune.report(
            {
                "failed": 1.0,
                "stop_reason": stop_reason_for(exc),
                "error": error,
                SCHEDULE_METRIC: float("inf"),
            }
        )
        return
    # The final report comes after the MLflow run is closed: Tune may end the trial at any report.
    final = {**result.metrics, "step": cfg.train.max_steps, "stop_reason": result.stop_reason}
    if result.stop_reason == "already_recorded":
        final["already_recorded"] = 1.0
    tune.report(final)


def _budget_block(cfg: Config, trial_id: str) -> str | None:
    from ftsweep.sweep.budget import over_budget

    if cfg.sweep.budget_usd is None and cfg.sweep.time_budget_s is None:
        return None
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(experiment_name(cfg))
    runs = client.search_runs([experiment.experiment_id], max_results=10000) if experiment else []
    own = [r for r in runs if r.data.tags.get(TAG_TRIAL_ID) == trial_id]
    if any(r.info.status == "FINISHED" for r in own):
        return None  # already paid for; run_trial returns the record
    return over_budget(cfg, runs, own[0].info.run_id if own else None)


def trial_resources(cfg: Config, node_cpus: int) -> dict[str, float]:
    """One single-process trial's share: GPUs from the hardware group, CPUs split between
    concurrent trials."""
    concurrent = cfg.sweep.max_concurrent_trials
    if cfg.hardware.device == "cuda":
        # A GPU trial needs a few CPUs to feed its device, not the node's share.
        cpus = cfg.sweep.cpus_per_trial or 2
        return {"cpu": cpus, "gpu": cfg.hardware.devices_per_trial}
    cpus = cfg.sweep.cpus_per_trial or max(1, node_cpus // concurrent)
    return {"cpu": cpus}


def cpus_per_worker(cfg: Config) -> int:
    # A worker-group trial's CPUs (train.threads, set from the trial's share) split between workers.
    return max(1, (cfg.train.threads or 1) // cfg.method.group_size)


def _resources_for(base: dict, single_process: dict[str, float]):
    """Per-trial resources: a trial that starts a Ray Train worker group reserves no CPU or GPU
    itself (its workers reserve their own; a CPU held here could starve them), others their share."""

    def resources(config: dict) -> dict[str, float]:
        from ftsweep.trial.workers import DRIVER_RESOURCES

        cfg = _trial_of(config, validate(base)).config
        return dict(DRIVER_RESOURCES) if cfg.method.group_size > 1 else dict(single_process)

    return resources


# A stopped trial's thread closes its MLflow run before a reused worker takes the next trial;
# Ray's default wait (2 s) can run out on a busy machine, and the worker is then killed mid-write.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}
# Read by the raylet that ray.init starts on this machine (a cluster keeps its own setting).
WORKER_NICENESS = "RAY_worker_niceness"


def _start_ray(cfg: Config) -> int:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        env = {"runtime_env": {"env_vars": WORKER_ENV}}
        if address:
            ray.init(address=address, log_to_driver=False, **env)
        else:
            # Ray runs workers at nice 15 to keep its own daemons responsive; on a machine that
            # also runs anything else, that slows the trials and inflates the wall time and cost
            # they record. Trials are the point of the sweep: they run at normal priority.
            os.environ.setdefault(WORKER_NICENESS, "0")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, **env)
    # A trial runs on one node: its CPU share is cut from the largest node, not the cluster sum.
    per_node = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(per_node, default=1))


def _check_sweep(cfg: Config) -> list[TrialSpec]:
    """Everything a sweep asks for, validated before Ray starts: the grid's trial list."""
    if not cfg.sweep.space:
        raise ConfigError("sweep.space is empty: choose a sweep with sweep=NAME (see sweeps/)")
    if cfg.sweep.scheduler == "asha" and cfg.train.eval_every is None:
        raise ConfigError(
            "sweep.scheduler=asha needs train.eval_every (steps between the evaluations its rungs compare)"
        )
    if cfg.sweep.algorithm == "grid":
        specs = expand(cfg)
        _refuse_what_cannot_fit(cfg, specs)
        return specs
    check_ranges(cfg.sweep.space)
    return []


def _refuse_what_cannot_fit(cfg: Config, specs: list[TrialSpec]) -> None:
    """The memory plan's verdict on every trial, before anything runs (sweep.force overrides)."""
    from ftsweep.planning.plan import check_fits

    if cfg.sweep.force:
        return
    for spec in specs:
        reason = check_fits(spec.config)
        if reason:
            raise ConfigError(f"{spec.run_name}: {reason} (sweep.force=true launches it anyway)")


def _searcher(cfg: Config):
    if cfg.sweep.algorithm == "grid":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = (
        optuna.samplers.TPESampler(seed=cfg.train.seed)
        if cfg.sweep.algorithm == "optuna"
        else optuna.samplers.RandomSampler(seed=cfg.train.seed)
    )
    return OptunaSearch(
        space=define_by_run(cfg.sweep.space), metric=SCHEDULE_METRIC, mode="min", sampler=sampler
    )


def _scheduler(cfg: Config):
    if cfg.sweep.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    t = cfg.train
    most_tokens = t.max_steps * t.batch_size * t.grad_accum * t.seq_len  # an upper bound
    return ASHAScheduler(
        time_attr="tokens",
        metric=SCHEDULE_METRIC,
        mode="min",
        max_t=most_tokens,
        grace_period=cfg.sweep.asha.grace_period_tokens,
        reduction_factor=cfg.sweep.asha.reduction_factor,
    )


# Searchers and ASHA compare trials on held-out loss: it exists at every rung, while quality
# (generation) is measured once a trial completes.
SCHEDULE_METRIC = "eval_loss"


def run_sweep(cfg: Config, console=None) -> SweepOutcome:
    """Run (or resume) the sweep named in cfg.sweep and return what each trial reported."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from ftsweep.sweep.progress import ProgressCallback, SweepProgress

    specs = _check_sweep(cfg)
    uri = tracking_uri(cfg)
    results_path = cfg.results_path
    results_path.mkdir(parents=True, exist_ok=True)
    client = get_client(uri)
    experiment_id = ensure_experiment(client, experiment_name(cfg), results_path / "mlartifacts")
    abandoned = mark_abandoned_runs(client, experiment_id)

    node_cpus = _start_ray(cfg)
    resources = trial_resources(cfg, node_cpus)
    base = _with_threads(cfg, int(resources["cpu"]))
    trials = [
        {
            "trial_id": s.trial_id,
            "run_name": s.run_name,
            "config": _with_threads(s.config, int(resources["cpu"])),
        }
        for s in specs
    ]
    invocation_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, base=base, invocation_id=invocation_id),
        _resources_for(base, resources),
    )
    # Intermediate reports carry train loss or eval loss, not always both; ASHA and the searcher
    # skip a report without their metric, and every final report has it.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # MLflow is the record. Of Tune's own per-trial files only result.json is kept (its result
    # grid reads it); the TensorBoard logger would import torch into this process (1.6 s of
    # every start) and the CSV one duplicates the JSON.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    storage = str((results_path / "ray").resolve())
    name = ray_experiment_name(cfg, specs)
    progress = SweepProgress(specs, console=console, resumed_from=abandoned)
    path = os.path.join(storage, name)
    if tune.Tuner.can_restore(path):
        progress.note(f"resuming sweep state from {path}")
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        base_cfg = validate(base)

        def trial_name(trial) -> str:
            return _trial_of(trial.config, base_cfg).trial_id

        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)} if trials else {},
            tune_config=tune.TuneConfig(
                search_alg=_searcher(cfg),
                scheduler=_scheduler(cfg),
                num_samples=1 if trials else cfg.sweep.num_samples,
                max_concurrent_trials=cfg.sweep.max_concurrent_trials,
                # One worker process serves trial after trial: torch and transformers are
                # imported once, not once per trial.
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
                callbacks=[ProgressCallback(), JsonLoggerCallback()],
                verbose=0,  # the progress callback is the display
            ),
        )
    if cfg.sweep.baseline:
        _record_baselines(base, [t["config"] for t in trials], resources, progress)
    with progress:
        grid = tuner.fit()
    interrupted = progress.interrupted or grid.num_terminated + grid.num_errors < len(grid)
    if not interrupted:
        # Every trial has ended: a run still RUNNING lost its worker before it could close.
        mark_abandoned_runs(client, experiment_id, reason="worker_lost")
    base_cfg = validate(base)
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for result in grid:
        trial_id = _trial_of(result.config, base_cfg).trial_id
        if result.error is not None:
            errors[trial_id] = f"{type(result.error).__name__}: {result.error}".splitlines()[0]
        else:
            results[trial_id] = dict(result.metrics or {})
    ran = specs or [_trial_of(r.config, base_cfg) for r in grid]
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
    runs = client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=10000
    )
    return {r.data.tags.get(TAG_TRIAL_ID): r for r in runs}
