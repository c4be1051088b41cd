"""Which configuration to use: runs grouped by configuration (one per seed), the Pareto front
of quality against cost, the tolerance that calls two qualities equal, and the cheapest
configuration within it of the best (`recommend`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ftsweep.report.runs import RunRow

# Two runs this close in quality are called equal unless the seeds spread wider.
MIN_TOLERANCE = 0.02


@dataclass
class ConfigGroup:
    """The runs of one configuration, one per seed."""

    rows: list[RunRow]

    @property
    def first(self) -> RunRow:
        return self.rows[0]

    @property
    def key(self) -> tuple:
        return self.first.config_key

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def knobs(self) -> str:
        return self.first.knobs

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def qualities(self) -> list[float]:
        return [r.quality for r in self.rows]

    @property
    def quality(self) -> float:
        return statistics.fmean(self.qualities)

    @property
    def spread(self) -> float:
        return max(self.qualities) - min(self.qualities)

    @property
    def cost_usd(self) -> float:
        return statistics.fmean(r.cost_usd for r in self.rows)

    @property
    def best_run(self) -> RunRow:
        return max(self.rows, key=lambda r: (r.quality, -r.cost_usd))


def group_by_config(rows: Iterable[RunRow]) -> list[ConfigGroup]:
    groups: dict[tuple, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.config_key, []).append(row)
    return [ConfigGroup(g) for g in groups.values()]


def pareto_front(rows: Iterable[RunRow]) -> list[RunRow]:
    """Runs no other run beats on both cost (lower) and quality (higher), cheapest first."""
    front: list[RunRow] = []
    best_quality = -math.inf
    for row in sorted(rows, key=lambda r: (r.cost_usd, -r.quality)):
        if row.quality > best_quality:
            front.append(row)
            best_quality = row.quality
    return front


def quality_varies(rows: Iterable[RunRow]) -> bool:
    """False when every run scored the same: quality then cannot rank anything."""
    return len({round(r.quality, 9) for r in rows}) > 1


def seed_spread(groups: Iterable[ConfigGroup]) -> float | None:
    """The widest quality range among configurations run with more than one seed."""
    spreads = [g.spread for g in groups if g.n > 1]
    return max(spreads) if spreads else None


def quality_tolerance(groups: Iterable[ConfigGroup]) -> float:
    return max(MIN_TOLERANCE, seed_spread(groups) or 0.0)


@dataclass
class Recommendation:
    group: ConfigGroup
    best: ConfigGroup  # highest mean quality in the sweep
    tolerance: float
    contenders: list[ConfigGroup]  # every configuration within tolerance of the best

    @property
    def run(self) -> RunRow:
        return self.group.best_run


def recommend(rows: Iterable[RunRow]) -> Recommendation | None:
    """The cheapest configuration whose mean quality is within tolerance of the best one."""
    groups = group_by_config(r for r in rows if r.usable)
    if not groups:
        return None
    tolerance = quality_tolerance(groups)
    best = max(groups, key=lambda g: (g.quality, -g.cost_usd))
    contenders = [g for g in groups if g.quality >= best.quality - tolerance - 1e-12]
    choice = min(contenders, key=lambda g: (g.cost_usd, -g.quality))
    return Recommendation(choice, best, tolerance, sorted(contenders, key=lambda g: g.cost_usd))
