"""Every second a trial spends is priced: each attempt's wall time, and the run's total.

A trial that broke off (a lost worker, a killed node) and resumed from its checkpoint ran more
than once; its run records each attempt's wall time (`attempt_wall_time_s`, step = the
attempt's number, 0 first) and `wall_time_s`/`cost_usd` as their sum, with `lost_wall_time_s`
the part spent before the last attempt. An attempt whose process was killed could not record
its own end: its time runs from its start (`attempt_started_at`) to the last thing it logged
(train loss every `train.log_every` steps), a lower bound of what it cost.

Runs that stopped early, failed or were interrupted are priced the same way, so the budget and
the report see every attempt.
"""

from __future__ import annotations

import time

from ftsweep.config import Config

ATTEMPT_START = "attempt_started_at"  # epoch seconds, step = attempt number
ATTEMPT_TIME = "attempt_wall_time_s"  # seconds, step = attempt number


def begin_attempt(run, started_at: float) -> None:
    run.log_metrics({ATTEMPT_START: started_at}, step=run.failures)


def attempt_times_s(client, run_id: str, attempts: int) -> list[float]:
    """Wall time of the run's first `attempts` attempts: as recorded, or estimated from what
    each logged where its process was killed before it could record its own end."""
    if attempts == 0:
        return []
    recorded = {m.step: m.value for m in client.get_metric_history(run_id, ATTEMPT_TIME)}
    starts = {m.step: m.value for m in client.get_metric_history(run_id, ATTEMPT_START)}
    stamps = sorted(
        m.timestamp / 1000
        for key in client.get_run(run_id).data.metrics
        if key not in (ATTEMPT_START, ATTEMPT_TIME)
        for m in client.get_metric_history(run_id, key)
    )
    times = []
    for attempt in range(attempts):
        if attempt in recorded:
            times.append(recorded[attempt])
            continue
        start = starts.get(attempt)
        end = starts.get(attempt + 1, float("inf"))
        logged = [s for s in stamps if start is not None and start <= s < end]
        times.append(max(logged) - start if logged else 0.0)
    return times


def log_attempt_totals(cfg: Config, recorder, times: list[float]) -> dict:
    """Each attempt's time and the run's totals (the last attempt is the one that counts as
    the run's own; the others were lost), logged; returns the totals."""
    from ftsweep.planning.cost import trial_cost_usd

    for attempt, seconds in enumerate(times):
        recorder.log_metrics({ATTEMPT_TIME: seconds}, step=attempt, replace=True)
    total = sum(times)
    totals = {
        "wall_time_s": total,
        "lost_wall_time_s": sum(times[:-1]),
        # what it rented, for every attempt (planning.cost.trial_cost_usd)
        "cost_usd": trial_cost_usd(cfg, total),
    }
    recorder.log_metrics(totals, step=cfg.train.max_steps, replace=True)
    return totals


def close_attempt(cfg: Config, run, started_at: float, this_s: float | None = None) -> dict:
    """This attempt's time and the run's totals, logged; `this_s` defaults to the time since
    `started_at`."""
    this_s = time.time() - started_at if this_s is None else this_s
    before = attempt_times_s(run.client, run.run_id, run.failures)
    return log_attempt_totals(cfg, run, [*before, this_s])


def close_unrecorded_attempt(cfg: Config, recorder, failures: int) -> dict:
    """The totals of a run whose last attempt ended without recording its time (its process
    was ended from outside), that attempt estimated from what it logged."""
    return log_attempt_totals(
        cfg, recorder, attempt_times_s(recorder.client, recorder.run_id, failures + 1)
    )
