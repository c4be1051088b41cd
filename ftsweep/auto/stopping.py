"""When `ftsweep auto`'s confirm stage has settled the choice.

The choice is the report's (`ftsweep.report.recommendation.recommend`): the cheapest
configuration not significantly below the best. What can still move it is the cheapest of those
near-best ones, set against the best: the confirm stage gives both another seed until

1. the best is itself the cheapest of the configurations not significantly below it;
2. the paired interval of best minus the cheapest near-best excludes 0 (and the seeds' spread
   does not cover the difference): the best is better, and the next cheapest near-best is
   examined;
3. that interval lies within +-`EQUIVALENCE_MARGIN`: the two are equal for any practical purpose,
   and the cheaper is the choice;
4. both have `MAX_SEEDS` seeds: the interval still includes 0, and more seeds would mostly resample
   the same examples (the examples' part of it does not shrink with seeds);

or the budget is spent (the sweep's gate refuses the next launch).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ftsweep.data.intervals import Scores, two_level_interval
from ftsweep.report.evidence import Comparison, ConfigGroup

# Quality differences inside this are no difference (a share of the task's metric): the bench's
# ASHA check calls a gap under 0.02 the same winner (bench/README.md).
EQUIVALENCE_MARGIN = 0.02
MAX_SEEDS = 3


@dataclass(frozen=True)
class Decision:
    settled: bool
    reason: str


def compare_scores(best: Sequence[Scores], other: Sequence[Scores]) -> Comparison:
    """best - other in mean score, paired over the examples both scored and their seeds, as the
    report compares two configurations from per-example scores (`Evidence.difference`)."""
    interval = two_level_interval(list(best), list(other))
    spreads = [
        max(means) - min(means)
        for means in ([statistics.fmean(s.values()) for s in side] for side in (best, other))
        if len(means) > 1
    ]
    return Comparison(
        interval.estimate,
        interval,
        f"paired over {interval.n} examples",
        max(spreads) if spreads else None,
        paired=True,
    )


def decide(
    comparison: Comparison | None,
    seeds: int,
    max_seeds: int = MAX_SEEDS,
    margin: float = EQUIVALENCE_MARGIN,
) -> Decision:
    """Whether best vs the cheapest near-best is settled (see the module docstring); `comparison`
    is None when the best is the cheapest near-best itself, `seeds` the fewer of the two's."""
    if comparison is None:
        return Decision(True, "the best is the cheapest of the configurations not below it")
    c = comparison
    if not c.tie:
        return Decision(
            True,
            f"best - cheapest near-best = {c.value:+.3f} [{c.low:+.3f}, {c.high:+.3f}] excludes 0",
        )
    if c.known and -margin <= c.low and c.high <= margin:
        return Decision(
            True,
            f"best - cheapest near-best = {c.value:+.3f} [{c.low:+.3f}, {c.high:+.3f}], within "
            f"+-{margin:g}: equal for practical purposes, the cheaper is the choice",
        )
    if seeds >= max_seeds:
        interval = f" [{c.low:+.3f}, {c.high:+.3f}]" if c.known else ""
        return Decision(
            True,
            f"after {seeds} seeds each, best - cheapest near-best = {c.value:+.3f}{interval} still "
            "includes 0: tied within noise, the cheaper is the choice",
        )
    return Decision(
        False, f"best - cheapest near-best = {c.value:+.3f} includes 0: another seed each"
    )


def cheapest_near_best(rec) -> ConfigGroup | None:
    """The cheapest configuration not significantly below the recommendation's best, other than
    the best itself; None when the best is the cheapest of them."""
    cheapest = rec.contenders[0] if rec.contenders else rec.best
    return None if cheapest is rec.best else cheapest


def next_decision(rec, max_seeds: int = MAX_SEEDS, margin: float = EQUIVALENCE_MARGIN) -> Decision:
    """`decide` for a recommendation over the runs recorded so far."""
    if rec.group is None:
        return Decision(True, rec.why_none or "nothing is recommended")
    other = cheapest_near_best(rec)
    if other is None:
        return decide(None, rec.best.n, max_seeds, margin)
    return decide(rec.versus_best[other.ids], min(rec.best.n, other.n), max_seeds, margin)
