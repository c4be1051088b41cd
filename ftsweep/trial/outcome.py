"""How a trial ended: one mapping from what was raised to the run's (status, stop_reason).

Used by single-process trials, worker groups and the base-model run alike, so Ctrl-C is
KILLED/interrupted everywhere and an out-of-memory failure is `oom` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrialResult:
    trial_id: str
    run_id: str
    status: str  # FINISHED, FAILED or KILLED, as in MLflow
    stop_reason: str  # completed, already_recorded, early_stopped, diverged, oom, failed, ...
    metrics: dict[str, float] = field(default_factory=dict)


def stop_reason_for(exc: BaseException) -> str:
    """Why a trial failed: `diverged`, `oom` or `failed`."""
    import torch

    if isinstance(exc, TrialDiverged):
        return "diverged"
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return "oom"
    return "failed"


def outcome_of(exc: BaseException) -> tuple[str, str]:
    """(MLflow status, stop reason) of a trial that ended by raising `exc`."""
    if isinstance(exc, SystemExit):
        # Ray Tune ends a trial its scheduler stopped by raising SystemExit inside `report`.
        return "FINISHED", "early_stopped"
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED", "interrupted"
    return "FAILED", stop_reason_for(exc)


def worker_failure(exc: BaseException) -> BaseException:
    """What went wrong on a worker group's workers, as the worker raised it.

    Ray Train gathers one exception per failed rank; when one rank fails the others often fail
    as a consequence (a closed connection). The one that explains the failure comes first: a
    reason of the trial's own (divergence, out of memory), then a Ray error (a lost worker,
    worth a retry), then the lowest rank's. Any other exception is its own cause.
    """
    from ray.exceptions import RayError

    # Ray Train wraps what happened: a controller's own failure, or a failed health check of a
    # worker whose process died (the ActorDiedError inside is what a retry can fix).
    for wrapped in ("controller_failure", "health_check_failure"):
        inner = getattr(exc, wrapped, None)
        if isinstance(inner, BaseException):
            return worker_failure(inner)
    failures = getattr(exc, "worker_failures", None)
    if not failures:
        return exc
    by_rank = [worker_failure(failures[rank]) for rank in sorted(failures)]
    for error in by_rank:
        if stop_reason_for(error) != "failed":
            return error
    for error in by_rank:
        if isinstance(error, RayError):
            return error
    return by_rank[0]


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
