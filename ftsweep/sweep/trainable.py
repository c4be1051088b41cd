"""What Ray Tune runs per trial: the plain trial function, reporting to Tune.

A failure that retrying cannot fix (divergence, out of memory, a bug) is recorded FAILED in
MLflow and ends the trial normally, so Ray does not retry it; a transient one (a lost worker or
node, an unreachable store) is raised for Ray to retry up to sweep.max_failures.
"""

from __future__ import annotations

from ftsweep.config import Config, validate
from ftsweep.sweep.resources import cpus_per_worker
from ftsweep.sweep.space import TrialSpec, spec_from_sample
from ftsweep.tracking.queries import experiment_runs
from ftsweep.tracking.record import TAG_TRIAL_ID
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

# Searchers and ASHA compare trials on held-out loss: it exists at every rung, while quality
# (generation) is measured once a trial completes.
SCHEDULE_METRIC = "eval_loss"
# A grid point's one key: its trial id. Ray copies the whole parameter space for every point it
# makes, so the space holds ids and the trials' configs travel once, beside it (`grid`).
GRID_KEY = "trial_id"


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is worth a retry (sweep.max_failures): the worker, the node or the
    network went away, not the trial."""
    from ray.exceptions import NodeDiedError, RayActorError, WorkerCrashedError

    # RayActorError covers ActorDiedError; the tracking store's TrackingUnavailable is a
    # ConnectionError.
    transient = (RayActorError, WorkerCrashedError, NodeDiedError, ConnectionError, TimeoutError)
    return isinstance(exc, transient)


def trial_of(config: dict, base: Config, grid: dict[str, dict] | None = None) -> TrialSpec:
    """The trial a Tune config stands for: a grid point names its trial by id, looked up in
    `grid` (trial id -> trial_id, run_name, config); a searcher's sample is a point of the
    conditional space."""
    if GRID_KEY in config:
        spec = (grid or {})[config[GRID_KEY]]
    elif "trial" in config:  # a grid point of Ray state saved when points carried their trial
        spec = config["trial"]
    else:
        return spec_from_sample(base, config)
    return TrialSpec(spec["trial_id"], spec["run_name"], validate(spec["config"]))


def trainable(
    config: dict, base: dict, invocation_id: str, grid: dict[str, dict] | None = None
) -> None:
    """One trial, reported to Tune; see the module's docstring for how failures end."""
    from ray import tune

    from ftsweep.trial.outcome import stop_reason_for
    from ftsweep.trial.run import run_trial, skip_trial

    spec = trial_of(config, validate(base), grid)
    cfg = spec.config
    reason = budget_block(cfg, spec.trial_id)
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
        # Tune keeps this in its own state (RESULTS/ray) and prints it: redacted first.
        error = redact_uri(f"{type(exc).__name__}: {exc}")[:500]
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


def budget_block(cfg: Config, trial_id: str) -> str | None:
    """Why this trial may not start within the sweep's budget, or None."""
    from ftsweep.sweep.budget import over_budget

    if cfg.sweep.budget_usd is None and cfg.sweep.time_budget_s is None:
        return None
    runs = experiment_runs(get_client(tracking_uri(cfg)), experiment_name(cfg))
    own = [r for r in runs if r.data.tags.get(TAG_TRIAL_ID) == trial_id]
    if any(r.info.status == "FINISHED" for r in own):
        return None  # already paid for; run_trial returns the record
    return over_budget(cfg, runs, own[0].info.run_id if own else None)


def resources_for(
    base: dict, single_process: dict[str, float], grid: dict[str, dict] | None = None
):
    """Per-trial resources: a trial that starts a Ray Train worker group reserves no CPU or GPU
    itself (its workers reserve their own; a CPU held here could starve them), others their share."""

    def resources(config: dict) -> dict[str, float]:
        from ftsweep.trial.workers import DRIVER_RESOURCES

        cfg = trial_of(config, validate(base), grid).config
        return dict(DRIVER_RESOURCES) if cfg.method.group_size > 1 else dict(single_process)

    return resources
