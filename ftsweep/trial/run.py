"""One trial: model + method + data -> HF Trainer -> evaluation -> metrics, recorded in MLflow.

`run_trial(cfg)` is a plain function: `ftsweep train` calls it directly, Ray Tune calls it
from the sweep's trainable, and tests call it on a tiny model. It opens the trial's MLflow run
once, runs the recipe in this process (a group of one) or on a Ray Train worker group
(`method.num_workers` > 1), and records how it ended.
"""

from __future__ import annotations

import time

from ftsweep.config import Config
from ftsweep.tracking.record import TAG_FAILURES, TAG_TRIAL_ID, RunRecorder, TrialRun
from ftsweep.trial.attempts import begin_attempt, close_attempt, close_unrecorded_attempt
from ftsweep.trial.checkpoints import discard_checkpoints
from ftsweep.trial.environment import release_memory
from ftsweep.trial.hf_trainer import Reporter
from ftsweep.trial.identity import run_name_for, trial_id_for
from ftsweep.trial.measure import oom_tags
from ftsweep.trial.outcome import TrialResult, error_text, outcome_of, worker_failure


def skip_trial(
    cfg: Config, trial_id: str, run_name: str, invocation_id: str, reason: str
) -> TrialResult:
    """Record a trial that was not launched (e.g. over budget), and why."""
    run = TrialRun(cfg, trial_id, run_name, invocation_id)
    if run.already_finished:
        return TrialResult(
            trial_id, run.run_id, "FINISHED", "already_recorded", run.recorded_metrics()
        )
    run.finish("KILLED", "skipped_budget", reason)
    return TrialResult(trial_id, run.run_id, "KILLED", "skipped_budget")


def run_trial(
    cfg: Config,
    trial_id: str | None = None,
    report: Reporter | None = None,
    invocation_id: str = "train",
    show_progress: bool = False,
    cpus_per_worker: int = 1,
) -> TrialResult:
    """Train, evaluate and record one configuration. Raises after recording a failure.

    A worker group's reports reach Tune through Ray Train's own callback when it runs inside a
    Tune trial; outside Tune they go to `report` (called in Ray Train's controller process, so
    it must be picklable).
    """
    trial_id = trial_id or trial_id_for(cfg)
    run = TrialRun(cfg, trial_id, run_name_for(cfg), invocation_id)
    if run.already_finished:
        return TrialResult(
            trial_id, run.run_id, "FINISHED", "already_recorded", run.recorded_metrics()
        )
    started_at = time.time()
    begin_attempt(run, started_at)
    try:
        if cfg.method.group_size > 1:
            from ftsweep.trial.workers import train_on_workers

            metrics = train_on_workers(cfg, run, report, started_at, cpus_per_worker)
        else:
            from ftsweep.trial.recipe import train_and_evaluate

            metrics = train_and_evaluate(
                cfg, trial_id, run, report, started_at=started_at, show_progress=show_progress
            )
    except BaseException as exc:
        try:
            close_attempt(cfg, run, started_at)  # what the attempt cost, whatever ended it
        except Exception:  # the store may be what failed: the failure itself matters more
            pass
        cause = record_failure(cfg, run, exc)
        if cause is exc:
            raise
        # What a worker raised (TrialDiverged, OutOfMemoryError, a lost actor): callers tell a
        # transient failure from the trial's own by its type.
        raise cause from exc
    finally:
        if cfg.method.group_size == 1:
            release_memory()
    metrics |= close_attempt(cfg, run, started_at, metrics.get("wall_time_s"))
    run.finish("FINISHED", "completed")
    return TrialResult(trial_id, run.run_id, "FINISHED", "completed", metrics)


def record_failure(cfg: Config, run: TrialRun, exc: BaseException) -> BaseException:
    """Close the run with the status and reason `exc` means; returns the exception that
    explains it (a worker group's own failure unwrapped)."""
    cause = worker_failure(exc) if isinstance(exc, Exception) else exc
    status, reason = outcome_of(cause)
    if reason == "early_stopped":
        run.finish(status, reason)
        discard_checkpoints(cfg, run.trial_id)
    else:
        tags = oom_tags(cfg) if reason == "oom" else None
        run.finish(status, reason, error_text(cause), tags=tags)
    return cause


def close_stopped_run(cfg: Config, run) -> None:
    """Close the run of a trial the scheduler stopped, where its process ended first.

    Ray Tune ends a stopped trial's actor without waiting for the trial to see the stop
    (`record_failure` closes it when it does), so the driver closes what is left RUNNING: an
    early stop, priced up to the last thing the trial logged.
    """
    from ftsweep.tracking.store import tracking_uri

    recorder = RunRecorder.attach(tracking_uri(cfg), run.info.run_id)
    close_unrecorded_attempt(cfg, recorder, int(run.data.tags.get(TAG_FAILURES, "0")))
    recorder.finish("FINISHED", "early_stopped")
    discard_checkpoints(cfg, run.data.tags[TAG_TRIAL_ID])
