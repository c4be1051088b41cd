"""Dollar and time budgets: no trial starts whose estimated cost would pass the sweep's budget.

Spending is read from the sweep's MLflow runs (so it survives a resume), and a trial's cost is
estimated from finished runs of the same method, scaled by steps; runs still in flight count at
their estimate, so concurrent trials cannot overspend together.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftsweep.config import Config
from ftsweep.tracking.record import TAG_STOP_REASON


@dataclass(frozen=True)
class Spending:
    usd: float
    seconds: float


def _per_step(runs: list, method: str | None, metric: str) -> float | None:
    """Mean cost (or time) per training step of finished runs of a method (None: any method).
    A run the scheduler stopped early paid for part of its steps and none of its scoring: it
    would make a whole trial look cheaper than it is, so it is left out."""
    rates = [
        r.data.metrics[metric] / float(r.data.params["max_steps"])
        for r in runs
        if r.info.status == "FINISHED"
        and (getattr(r.data, "tags", None) or {}).get(TAG_STOP_REASON) != "early_stopped"
        and (method is None or r.data.params.get("method") == method)
        and metric in r.data.metrics
        and r.data.params.get("max_steps")
    ]
    return sum(rates) / len(rates) if rates else None


def _rate(runs: list, method: str, metric: str) -> float | None:
    # The method's own measured rate, else any method's: a rough guess beats none.
    own = _per_step(runs, method, metric)
    return own if own is not None else _per_step(runs, None, metric)


def estimate_trial(cfg: Config, runs: list) -> Spending | None:
    """Measured rate x steps; None before any run has finished (nothing to go on)."""
    usd_rate = _rate(runs, cfg.method.name, "cost_usd")
    s_rate = _rate(runs, cfg.method.name, "wall_time_s")
    if usd_rate is None or s_rate is None:
        return None
    return Spending(usd_rate * cfg.train.max_steps, s_rate * cfg.train.max_steps)


def spent(runs: list, own_run_id: str | None = None) -> Spending:
    """What the sweep has spent: recorded costs, plus an estimate for runs still running."""
    usd = seconds = 0.0
    for run in runs:
        if run.info.run_id == own_run_id:
            continue
        metrics = run.data.metrics
        if "cost_usd" in metrics:
            usd += metrics["cost_usd"]
            seconds += metrics.get("wall_time_s", 0.0)
        elif run.info.status == "RUNNING":
            method = run.data.params.get("method")
            steps = float(run.data.params.get("max_steps", 0) or 0)
            usd += (_rate(runs, method, "cost_usd") or 0.0) * steps
            seconds += (_rate(runs, method, "wall_time_s") or 0.0) * steps
    return Spending(usd, seconds)


def over_budget(cfg: Config, runs: list, own_run_id: str | None = None) -> str | None:
    """Why this trial must not start, or None when it fits (or there is no budget)."""
    budget_usd, budget_s = cfg.sweep.budget_usd, cfg.sweep.time_budget_s
    if budget_usd is None and budget_s is None:
        return None
    so_far = spent(runs, own_run_id)
    estimate = estimate_trial(cfg, runs) or Spending(0.0, 0.0)
    if budget_usd is not None and so_far.usd + estimate.usd > budget_usd:
        return (
            f"budget: spent ${so_far.usd:.4f} + this trial's estimate ${estimate.usd:.4f} "
            f"> sweep.budget_usd=${budget_usd:.4f}"
        )
    if budget_s is not None and so_far.seconds + estimate.seconds > budget_s:
        return (
            f"time budget: spent {so_far.seconds:.0f} s + this trial's estimate "
            f"{estimate.seconds:.0f} s > sweep.time_budget_s={budget_s:.0f} s"
        )
    return None
