"""Which configuration to use (`recommend`), and the Pareto front of quality against cost.

The recommendation is the cheapest configuration whose quality is not significantly below the
best one's (`ftsweep.report.evidence`: the paired 95% interval of best minus it includes 0, or
the seeds' spread covers the difference), among those that beat the untrained base model beyond
noise. When none beats the base model, nothing is recommended.

Cost breaks ties, on the target hardware:

- runs measured on another device than the target (CPU runs, a GPU target): the plan's cost on
  the target (`ftsweep.report.costs.planned_cost_usd`: FLOPs per token and each method's own
  speed, such as QLoRA's dequantisation), since wall times on one device do not carry over to
  another method by method;
- runs measured on the target, no target given, or a configuration the plan cannot size: the
  measured cost (projected to the target where one is given), counted only where costs differ
  by more than the run-to-run spread of wall time between seed repeats (10% where nothing was
  repeated); inside that spread, the tied configuration with the highest quality estimate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from ftsweep.config import HardwareConfig
from ftsweep.report.costs import group_cost_usd, hardware_named, planned_cost_usd
from ftsweep.report.evidence import (
    Comparison,
    ConfigGroup,
    Estimate,
    Evidence,
    group_by_config,
)
from ftsweep.report.runs import RunRow
from ftsweep.trial.baseline import BASELINE_METHOD

__all__ = [
    "ASSUMED_WALL_TIME_SPREAD",
    "ConfigGroup",
    "Recommendation",
    "WallTimeNoise",
    "group_by_config",
    "pareto_front",
    "quality_varies",
    "recommend",
    "seed_spread",
    "wall_time_noise",
]

# The run-to-run spread of wall time assumed where no configuration was repeated with seeds.
ASSUMED_WALL_TIME_SPREAD = 0.10


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


@dataclass(frozen=True)
class WallTimeNoise:
    """How much wall time moves between runs that differ only in their seed, as a share."""

    share: float
    repeated: int  # configurations with seed repeats it was measured on (0: assumed)

    @property
    def measured(self) -> bool:
        return self.repeated > 0

    def text(self) -> str:
        if self.measured:
            return (
                f"{self.share:.0%}, the widest run-to-run spread of wall time between seed repeats "
                f"({self.repeated} configuration{'s' * (self.repeated > 1)} repeated)"
            )
        return (
            f"{self.share:.0%}, assumed: no configuration was repeated with another seed, so the "
            "run-to-run spread of wall time was not measured"
        )


def wall_time_noise(groups: Iterable[ConfigGroup]) -> WallTimeNoise:
    spreads = []
    for g in groups:
        walls = [r.wall_time_s for r in g.rows if math.isfinite(r.wall_time_s)]
        if len(walls) > 1 and statistics.fmean(walls) > 0:
            spreads.append((max(walls) - min(walls)) / statistics.fmean(walls))
    if not spreads:
        return WallTimeNoise(ASSUMED_WALL_TIME_SPREAD, 0)
    return WallTimeNoise(max(spreads), len(spreads))


@dataclass
class Recommendation:
    """What the sweep says to use, with the comparisons behind it. `group` is None when no
    configuration beat the base model beyond noise (`why_none` says so)."""

    group: ConfigGroup | None
    best: ConfigGroup  # the highest quality estimate among the candidates
    contenders: list[ConfigGroup]  # not significantly below the best, cheapest first
    estimates: dict[tuple, Estimate]  # by group ids
    versus_best: dict[tuple, Comparison]  # best - group, by group ids (not the best itself)
    lifts: dict[tuple, Comparison]  # group - base model, by group ids (empty without one)
    costs: dict[tuple, float]  # cost per run, measured or projected to the target, by group ids
    cost_basis: str  # "measured on cpu", "projected to a100-80gb", ...
    noise: WallTimeNoise
    baseline: RunRow | None
    tie_break: str  # how the choice among contenders was made, in a sentence
    why_none: str | None = None
    choice_short: str = ""  # the same in a few words, for the headline
    by_plan: bool = False  # the tie was broken by the plan's cost on the target
    groups: list[ConfigGroup] = field(default_factory=list)

    @property
    def run(self) -> RunRow | None:
        """The run to use: the chosen configuration's best seed."""
        return self.group.best_run if self.group else None

    def estimate(self, group: ConfigGroup) -> Estimate:
        return self.estimates[group.ids]


def _cost_basis(groups: list[ConfigGroup], target: HardwareConfig | None) -> str:
    names = sorted({r.params.get("hardware", "?") for g in groups for r in g.rows})
    if target is None:
        return f"measured on {', '.join(names)}"
    if names == [target.name]:
        return f"measured on {target.name}, the target"
    return f"projected to {target.name} from {', '.join(names)}"


def recommend(
    rows: Iterable[RunRow],
    *,
    target: HardwareConfig | None = None,
    evidence: Evidence | None = None,
    hardware: dict[str, HardwareConfig] | None = None,
) -> Recommendation | None:
    """The recommendation from one inputs group's runs (the base model's run among them, if
    measured); None when no run finished with a quality and a cost."""
    rows = list(rows)
    evidence = evidence or Evidence()
    baselines = [r for r in rows if r.method == BASELINE_METHOD and r.usable]
    baseline = baselines[-1] if baselines else None
    groups = group_by_config(r for r in rows if r.usable and r.method != BASELINE_METHOD)
    if not groups:
        return None
    if hardware is None:
        hardware = hardware_named(r.params.get("hardware", "") for g in groups for r in g.rows)
    estimates = {g.ids: evidence.quality(g) for g in groups}
    costs = {g.ids: group_cost_usd(g.rows, target, hardware) for g in groups}
    noise = wall_time_noise(groups)
    basis = _cost_basis(groups, target)

    lifts: dict[tuple, Comparison] = {}
    candidates = groups
    why_none = None
    if baseline is not None:
        base = ConfigGroup([baseline])
        lifts = {g.ids: evidence.difference(g, base) for g in groups}
        candidates = [g for g in groups if lifts[g.ids].positive]
        if not candidates:
            why_none = (
                "no configuration beats the untrained base model beyond noise "
                "(the 95% interval of each one's quality minus the base model's includes 0 or is below it)"
            )

    def rank(g: ConfigGroup) -> tuple:
        return (estimates[g.ids].value, -costs[g.ids])

    pool = candidates or groups
    best = max(pool, key=rank)
    versus_best = {g.ids: evidence.difference(best, g) for g in groups if g is not best}
    contenders = [g for g in pool if g is best or versus_best[g.ids].tie]
    contenders.sort(key=lambda g: costs[g.ids])
    common = dict(
        best=best,
        contenders=contenders,
        estimates=estimates,
        versus_best=versus_best,
        lifts=lifts,
        costs=costs,
        cost_basis=basis,
        noise=noise,
        baseline=baseline,
        groups=groups,
    )
    if why_none:
        return Recommendation(group=None, tie_break="", why_none=why_none, **common)
    if len(contenders) == 1:
        return Recommendation(
            group=best,
            tie_break="every other configuration is significantly below it",
            choice_short="the best quality, significantly above every other configuration",
            **common,
        )
    planned = _planned(contenders, target)
    if planned is not None:
        choice, tie_break = _by_plan(contenders, planned, target)
        short = f"the cheapest of them on {target.name} by the plan"
    else:
        choice, tie_break, short = _break_tie(contenders, costs, estimates, noise)
    return Recommendation(
        group=choice,
        tie_break=tie_break,
        choice_short=short,
        by_plan=planned is not None,
        **common,
    )


def _planned(contenders: list[ConfigGroup], target: HardwareConfig | None) -> dict | None:
    """The plan's cost on the target of each contender, where the runs were measured elsewhere
    and the plan can size every one of them; else None (measured costs decide)."""
    if target is None:
        return None
    if all(r.params.get("hardware") == target.name for g in contenders for r in g.rows):
        return None
    planned = {g.ids: planned_cost_usd(g.first, target) for g in contenders}
    return planned if all(math.isfinite(c) and c > 0 for c in planned.values()) else None


def _by_plan(
    contenders: list[ConfigGroup], planned: dict[tuple, float], target: HardwareConfig
) -> tuple[ConfigGroup, str]:
    ranked = sorted(contenders, key=lambda g: planned[g.ids])
    choice, runner_up = ranked[0], ranked[1]
    extra = planned[runner_up.ids] / planned[choice.ids] - 1
    return choice, (
        f"the cheapest on {target.name} by the plan (FLOPs per token and each method's speed, for the "
        f"plan's 5,000-example workload), since the runs were measured on another device and wall "
        f"times do not carry over method by method: the next cheapest of the {len(contenders)} "
        f"configurations not significantly below the best is planned {extra:.0%} dearer"
    )


def _break_tie(
    contenders: list[ConfigGroup],
    costs: dict[tuple, float],
    estimates: dict[tuple, Estimate],
    noise: WallTimeNoise,
) -> tuple[ConfigGroup, str, str]:
    priced = [g for g in contenders if math.isfinite(costs[g.ids])]
    if not priced:
        choice = max(contenders, key=lambda g: estimates[g.ids].value)
        return (
            choice,
            "no cost could be put on them (hardware not in conf/hardware): the highest quality estimate",
            "the highest quality of them (their costs are unknown)",
        )
    contenders = sorted(priced, key=lambda g: costs[g.ids])
    cheapest = costs[contenders[0].ids]

    def within_noise(g: ConfigGroup) -> bool:
        cost = costs[g.ids]
        if not (math.isfinite(cost) and math.isfinite(cheapest)):
            return False
        return cost <= 0 or (cost - cheapest) / cost <= noise.share + 1e-12

    tied = [g for g in contenders if within_noise(g)]
    choice = max(tied, key=lambda g: (estimates[g.ids].value, -costs[g.ids]))
    others = len(contenders) - 1
    if len(contenders) == 1:
        return (
            choice,
            "the only one of them with a known cost",
            "the only one of them with a known cost",
        )
    if len(tied) == 1:
        runner_up = contenders[1]
        extra = costs[runner_up.ids] / cheapest - 1 if cheapest > 0 else math.inf
        return (
            choice,
            f"the cheapest of the {others + 1} configurations not significantly below the best: "
            f"the next cheapest costs {extra:.0%} more, beyond the wall-time spread of {noise.share:.0%}",
            "the cheapest of them, beyond the wall-time spread",
        )
    return (
        choice,
        f"{len(tied)} of the {others + 1} configurations not significantly below the best cost "
        f"within the wall-time spread of {noise.share:.0%} of the cheapest, so cost cannot tell them "
        "apart: the one with the highest quality estimate among them",
        "the highest quality of those whose costs are within the wall-time spread of the cheapest",
    )
