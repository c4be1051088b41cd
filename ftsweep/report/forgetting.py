"""What fine-tuning learned against what it forgot, per method and LoRA rank: the best
configuration's lift over the untrained base model (quality minus the base's, with its 95%
interval) beside its forgetting (nats on general text, with its 95% interval), as Biderman et al.
2024 ("LoRA Learns Less and Forgets Less") set learning against forgetting."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ftsweep.report.analysis import Analysis
from ftsweep.report.evidence import Comparison, ConfigGroup
from ftsweep.report.methods import report_order


@dataclass(frozen=True)
class Forgetting:
    """A configuration's forgetting and its 95% interval, NaN where its runs recorded none.

    With several seeds: the mean of the runs' estimates and of their interval ends. Every run
    scores the same windows of text, so the runs' intervals move together and their mean is a
    fair width; the seeds' own spread is not in it."""

    value: float
    low: float
    high: float

    @property
    def known(self) -> bool:
        return math.isfinite(self.value)

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def above_zero(self) -> bool:
        """Worse at general text beyond the noise of which windows were drawn."""
        return self.has_interval and self.low > 0


def group_forgetting(group: ConfigGroup) -> Forgetting:
    def mean(key: str) -> float:
        values = [r.metrics.get(key, math.nan) for r in group.rows]
        return statistics.fmean(values) if all(math.isfinite(v) for v in values) else math.nan

    return Forgetting(mean("forgetting"), mean("forgetting_ci_low"), mean("forgetting_ci_high"))


@dataclass(frozen=True)
class LiftAndForgetting:
    """One point of the lift-against-forgetting plot."""

    method: str
    rank: int | None  # LoRA rank; None for methods without one
    group: ConfigGroup
    lift: Comparison  # quality minus the base model's, with its interval
    forgetting: Forgetting


def lift_and_forgetting_points(a: Analysis) -> list[LiftAndForgetting]:
    """The best configuration (by quality) of each method at each LoRA rank, or of a method
    with no rank, with its lift and forgetting; empty without a base model to lift from."""
    if a.baseline is None or not math.isfinite(a.baseline.quality):
        return []
    base = ConfigGroup([a.baseline])
    cells: dict[tuple[str, int | None], list[ConfigGroup]] = {}
    for group in a.groups:
        cells.setdefault((group.method, group.first.lora_r), []).append(group)
    points = []
    for (method, rank), groups in cells.items():
        best = max(groups, key=lambda g: a.evidence.quality(g).value)
        lift = a.evidence.difference(best, base)
        points.append(LiftAndForgetting(method, rank, best, lift, group_forgetting(best)))
    return sorted(points, key=lambda p: (report_order(p.method), p.rank or 0))
