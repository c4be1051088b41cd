"""What a sweep's runs show, computed once (`analyse` -> `Analysis`): the recommendation and
the costs (from `recommendation` and `costs`), each knob's effect, LoRA-type quality as a
percentage of full fine-tuning, and lift over the base model."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ftsweep.config import ConfigError, HardwareConfig
from ftsweep.config.sources import group_options
from ftsweep.planning.cost import load_hardware
from ftsweep.report.costs import (
    MethodCost,
    hardware_named,
    measured_costs,
    price_warnings,
    projected_costs,
)
from ftsweep.report.methods import by_method, is_full, report_order
from ftsweep.report.recommendation import (
    ConfigGroup,
    Recommendation,
    group_by_config,
    pareto_front,
    recommend,
)
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.trial.baseline import BASELINE_METHOD

# --- knobs -----------------------------------------------------------------------------------


@dataclass
class Effect:
    """Mean quality per value of one knob, per method."""

    method: str
    value: float | str
    rows: list[RunRow]

    @property
    def quality(self) -> float:
        return statistics.fmean(r.quality for r in self.rows)

    @property
    def low(self) -> float:
        return min(r.quality for r in self.rows)

    @property
    def high(self) -> float:
        return max(r.quality for r in self.rows)


KNOBS: dict[str, Callable[[RunRow], float | str | None]] = {
    "rank": lambda r: r.lora_r,
    "learning_rate": lambda r: r.learning_rate,
    "alpha_ratio": lambda r: round(r.alpha_ratio, 3) if r.alpha_ratio is not None else None,
    "targets": lambda r: r.targets,
}


def knob_effects(
    rows: Iterable[RunRow], knob: Callable[[RunRow], float | str | None]
) -> list[Effect]:
    cells: dict[tuple, list[RunRow]] = {}
    for row in rows:
        value = knob(row)
        if value is not None:
            cells.setdefault((row.method, value), []).append(row)
    ordered = sorted(cells.items(), key=lambda kv: (report_order(kv[0][0]), kv[0][1]))
    return [Effect(m, v, rs) for (m, v), rs in ordered]


def best_effect_per_method(effects: list[Effect]) -> dict[str, Effect]:
    best: dict[str, Effect] = {}
    for effect in effects:
        if effect.method not in best or effect.quality > best[effect.method].quality:
            best[effect.method] = effect
    return best


def distinct_values(effects: list[Effect]) -> int:
    return len({e.value for e in effects})


# --- against full fine-tuning and the base model ---------------------------------------------


@dataclass
class PercentOfFull:
    group: ConfigGroup
    mean: float
    low: float
    high: float


def best_full_run(rows: Iterable[RunRow]) -> RunRow | None:
    full = [r for r in rows if r.usable and is_full(r.method)]
    return max(full, key=lambda r: r.quality) if full else None


def percent_of_full(rows: list[RunRow]) -> list[PercentOfFull] | None:
    """Each LoRA-type configuration's quality as % of the best full run; None without a baseline."""
    baseline = best_full_run(rows)
    if baseline is None or baseline.quality <= 0:
        return None
    groups = group_by_config(r for r in rows if r.usable and r.is_adapter)
    scale = 100.0 / baseline.quality
    out = [
        PercentOfFull(g, g.quality * scale, min(g.qualities) * scale, max(g.qualities) * scale)
        for g in groups
    ]
    return sorted(out, key=lambda p: (report_order(p.group.method), -p.mean))


def best_percent_per_method(percents: list[PercentOfFull] | None) -> dict[str, PercentOfFull]:
    best: dict[str, PercentOfFull] = {}
    for p in percents or []:
        if p.group.method not in best or p.mean > best[p.group.method].mean:
            best[p.group.method] = p
    return best


@dataclass(frozen=True)
class Lift:
    """A method's quality over the untrained base model's, and what it forgot meanwhile."""

    method: str
    runs: int
    best_quality: float
    lift: float  # best quality - base quality
    mean_forgetting: float  # nats on general text; positive = worse than the base


def lift_over_base(usable: list[RunRow], baseline: RunRow | None) -> list[Lift]:
    if baseline is None or not math.isfinite(baseline.quality):
        return []
    return [
        Lift(
            method=method,
            runs=len(runs),
            best_quality=max(r.quality for r in runs),
            lift=max(r.quality for r in runs) - baseline.quality,
            mean_forgetting=_mean_finite(r.metrics.get("forgetting", math.nan) for r in runs),
        )
        for method, runs in by_method(usable).items()
    ]


def _mean_finite(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


# --- everything at once ----------------------------------------------------------------------


@dataclass
class Analysis:
    """Everything the sections are written from, computed once."""

    experiment: str
    tracking_uri: str
    rows: list[RunRow]
    usable: list[RunRow]
    left_out: list[RunRow]
    groups: list[ConfigGroup]
    recommendation: Recommendation | None
    front: list[RunRow]
    percents: list[PercentOfFull] | None
    hardware: dict[str, HardwareConfig]  # what the usable runs ran on, by name
    costs: list[MethodCost]
    target: HardwareConfig | None
    projected: list[MethodCost]
    projection_notes: list[str]
    price_warnings: list[str]
    today: dt.date
    effects: dict[str, list[Effect]]  # knob name -> quality per value, per method
    baseline: RunRow | None = None  # the untrained base model on the same task


def load_target(target_gpu: str | None) -> HardwareConfig | None:
    """The hardware option to project costs to, or None when none is asked for."""
    if not target_gpu:
        return None
    options = group_options("hardware")
    if target_gpu not in options:
        raise ConfigError(f"target={target_gpu}: no such hardware (allowed: {', '.join(options)})")
    return load_hardware(target_gpu)


def analyse(
    tracking_uri: str, experiment: str, target_gpu: str | None = None, today: dt.date | None = None
) -> Analysis:
    today = today or dt.date.today()
    rows = load_rows(tracking_uri, experiment)
    # The base model's run is the bar runs are measured against, not a candidate itself.
    baselines = [r for r in rows if r.method == BASELINE_METHOD and r.usable]
    rows = [r for r in rows if r.method != BASELINE_METHOD]
    target = load_target(target_gpu)
    usable = [r for r in rows if r.usable]
    hardware = hardware_named(r.params.get("hardware", "") for r in usable)
    projected, notes = projected_costs(rows, target, hardware) if target else ([], [])
    return Analysis(
        experiment=experiment,
        tracking_uri=tracking_uri,
        rows=rows,
        usable=usable,
        left_out=[r for r in rows if not r.usable],
        groups=group_by_config(usable),
        recommendation=recommend(rows),
        front=pareto_front(usable),
        percents=percent_of_full(rows),
        hardware=hardware,
        costs=measured_costs(rows, hardware),
        target=target,
        projected=projected,
        projection_notes=notes,
        price_warnings=price_warnings([*hardware.values(), *([target] if target else [])], today),
        today=today,
        effects={name: knob_effects(usable, knob) for name, knob in KNOBS.items()},
        baseline=baselines[-1] if baselines else None,
    )
