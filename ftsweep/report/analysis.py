"""What a sweep's runs show, computed once per group of runs on the same inputs (`analyse`,
`analyse_all` -> `Analysis`): the recommendation and the costs (from `recommendation` and
`costs`), each knob's effect, LoRA-type quality as a percentage of full fine-tuning, and lift
over the base model, every quality with its 95% interval (`evidence`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ftsweep.config import ConfigError, HardwareConfig
from ftsweep.config.sources import group_options
from ftsweep.methods import all_methods, find_method
from ftsweep.planning.cost import load_hardware
from ftsweep.report.costs import (
    MethodCost,
    hardware_named,
    measured_costs,
    price_warnings,
    projected_costs,
)
from ftsweep.report.evidence import Comparison, ConfigGroup, Estimate, Evidence, group_by_config
from ftsweep.report.inputs import InputsGroup, split_by_inputs
from ftsweep.report.methods import by_method, is_full, report_order
from ftsweep.report.recommendation import (
    Recommendation,
    pareto_front,
    quality_varies,
    recommend,
)
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.report.scores import ScoreSource
from ftsweep.report.spend import Spend, sweep_spend
from ftsweep.trial.baseline import BASELINE_METHOD

# --- knobs -----------------------------------------------------------------------------------


@dataclass
class Effect:
    """One knob value of one method: the configurations tried at it, and the best of them
    (its other knobs, learning rate included, at their best) with its quality and interval."""

    method: str
    value: float | str
    groups: list[ConfigGroup]
    best: ConfigGroup
    estimate: Estimate

    @property
    def rows(self) -> list[RunRow]:
        return [r for g in self.groups for r in g.rows]

    @property
    def quality(self) -> float:
        return self.estimate.value

    @property
    def low(self) -> float:
        return self.estimate.low if self.estimate.interval else self.quality

    @property
    def high(self) -> float:
        return self.estimate.high if self.estimate.interval else self.quality

    @property
    def learning_rates(self) -> list[float]:
        return sorted({g.first.learning_rate for g in self.groups if g.first.learning_rate})


KNOBS: dict[str, Callable[[RunRow], float | str | None]] = {
    "rank": lambda r: r.lora_r,
    "learning_rate": lambda r: r.learning_rate,
    "alpha_ratio": lambda r: round(r.alpha_ratio, 3) if r.alpha_ratio is not None else None,
    "targets": lambda r: r.targets,
}


def variant_knobs() -> list[str]:
    """The knobs that choose a method's variant (DoRA, an init, LoRA+, 8-bit AdamW), as the
    registered methods declare them."""
    return list(dict.fromkeys(k for m in all_methods() for k in m.variant_knobs))


def variant_value(key: str) -> Callable[[RunRow], str | None]:
    """A variant knob as a run recorded it (MLflow text), its default where the run did not
    record it (it was at the default: `MethodKnobs.changed`); None for a run whose method has
    no such knob."""

    def read(row: RunRow) -> str | None:
        method = find_method(row.method)
        if method is None or key not in method.variant_knobs:
            return None
        return row.params.get(key, str(method.knobs.model_fields[key].default))

    return read


def is_plain(row: RunRow) -> bool:
    """Every variant knob of the run's method at its default: plain LoRA, AdamW."""
    method = find_method(row.method)
    return method is not None and all(
        variant_value(k)(row) == str(method.knobs.model_fields[k].default)
        for k in method.variant_knobs
    )


def variant_groups(groups: Iterable[ConfigGroup], key: str) -> list[ConfigGroup]:
    """The configurations a variant knob's effect is read from: those that set it, and the
    plain ones, so its default stands for the plain method and not for another variant."""
    return [g for g in groups if is_plain(g.first) or not _at_default(g.first, key)]


def _at_default(row: RunRow, key: str) -> bool:
    method = find_method(row.method)
    value = variant_value(key)(row)
    return value is None or value == str(method.knobs.model_fields[key].default)


def knob_effects(
    groups: Iterable[ConfigGroup],
    knob: Callable[[RunRow], float | str | None],
    evidence: Evidence,
) -> list[Effect]:
    cells: dict[tuple, list[ConfigGroup]] = {}
    for group in groups:
        value = knob(group.first)
        if value is not None:
            cells.setdefault((group.method, value), []).append(group)
    ordered = sorted(cells.items(), key=lambda kv: (report_order(kv[0][0]), kv[0][1]))
    out = []
    for (method, value), gs in ordered:
        best = max(gs, key=lambda g: evidence.quality(g).value)
        out.append(Effect(method, value, gs, best, evidence.quality(best)))
    return out


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
    """A LoRA-type configuration's quality as % of the best full configuration's, with the
    95% interval of that ratio (NaN ends when unknown)."""

    group: ConfigGroup
    mean: float
    low: float
    high: float
    comparison: Comparison | None = None


def best_full_group(groups: Iterable[ConfigGroup], evidence: Evidence) -> ConfigGroup | None:
    full = [g for g in groups if is_full(g.method)]
    return max(full, key=lambda g: evidence.quality(g).value) if full else None


def best_full_run(rows: Iterable[RunRow]) -> RunRow | None:
    full = [r for r in rows if r.usable and is_full(r.method)]
    return max(full, key=lambda r: r.quality) if full else None


def percent_of_full(
    rows: list[RunRow], evidence: Evidence | None = None
) -> list[PercentOfFull] | None:
    """Each LoRA-type configuration's quality as % of the best full configuration; None without
    a full configuration scoring above 0."""
    evidence = evidence or Evidence()
    groups = group_by_config(r for r in rows if r.usable and r.method != BASELINE_METHOD)
    baseline = best_full_group(groups, evidence)
    if baseline is None or not evidence.quality(baseline).value > 0:
        return None
    out = []
    for g in groups:
        if not g.first.is_adapter:
            continue
        c = evidence.ratio(g, baseline)
        low, high = (c.low * 100, c.high * 100) if c.known else (math.nan, math.nan)
        out.append(PercentOfFull(g, c.value * 100, low, high, c))
    return sorted(out, key=lambda p: (report_order(p.group.method), -p.mean))


def best_percent_per_method(percents: list[PercentOfFull] | None) -> dict[str, PercentOfFull]:
    best: dict[str, PercentOfFull] = {}
    for p in percents or []:
        if p.group.method not in best or p.mean > best[p.group.method].mean:
            best[p.group.method] = p
    return best


@dataclass(frozen=True)
class Lift:
    """A method's best configuration against the untrained base model (what it forgot:
    `ftsweep.report.forgetting`)."""

    method: str
    runs: int
    best_quality: float  # the best configuration's quality estimate
    lift: float  # best quality - base quality
    comparison: Comparison | None = None  # best configuration - base model, with its interval
    best: ConfigGroup | None = None


def lift_over_base(
    usable: list[RunRow], baseline: RunRow | None, evidence: Evidence | None = None
) -> list[Lift]:
    if baseline is None or not math.isfinite(baseline.quality):
        return []
    evidence = evidence or Evidence()
    base = ConfigGroup([baseline])
    out = []
    for method, runs in by_method(usable).items():
        groups = group_by_config(runs)
        best = max(groups, key=lambda g: evidence.quality(g).value)
        comparison = evidence.difference(best, base)
        out.append(
            Lift(
                method=method,
                runs=len(runs),
                best_quality=evidence.quality(best).value,
                lift=comparison.value,
                comparison=comparison,
                best=best,
            )
        )
    return out


# --- everything at once ----------------------------------------------------------------------


@dataclass
class Analysis:
    """Everything the sections are written from, computed once, for runs on one set of inputs."""

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
    # knob name (rank, learning_rate, ..., and each variant knob: use_dora, init, optimizer, ...)
    # -> the best configuration per value, per method
    effects: dict[str, list[Effect]]
    baseline: RunRow | None = None  # the untrained base model on the same inputs
    evidence: Evidence = field(default_factory=Evidence)
    inputs: InputsGroup | None = None  # the inputs these runs share
    inputs_groups: int = 1  # how many sets of inputs the sweep's runs were on
    spend: Spend | None = None  # what every run on these inputs cost, by kind

    def estimate(self, group: ConfigGroup) -> Estimate:
        return self.evidence.quality(group)

    @property
    def flat(self) -> bool:
        """Every run scored the same quality: nothing can be ranked on quality."""
        return len(self.usable) > 1 and not quality_varies(self.usable)

    def without_scores(self) -> list[tuple[RunRow, str]]:
        """Usable runs (and the base model's) that have no per-example scores, with why."""
        rows = [*self.usable, *([self.baseline] if self.baseline else [])]
        out = []
        for row in rows:
            why = self.evidence.why_no_scores(row)
            if why:
                out.append((row, why))
        return out


def load_target(target_gpu: str | None) -> HardwareConfig | None:
    """The hardware option to project costs to, or None when none is asked for."""
    if not target_gpu:
        return None
    options = group_options("hardware")
    if target_gpu not in options:
        raise ConfigError(f"target={target_gpu}: no such hardware (allowed: {', '.join(options)})")
    return load_hardware(target_gpu)


def analyse_rows(
    all_rows: list[RunRow],
    *,
    experiment: str,
    tracking_uri: str,
    target: HardwareConfig | None,
    today: dt.date,
    evidence: Evidence | None = None,
    inputs: InputsGroup | None = None,
    inputs_groups: int = 1,
) -> Analysis:
    """The analysis of runs that share their inputs (the base model's run among them)."""
    evidence = evidence or Evidence()
    # The base model's run is the bar runs are measured against, not a candidate itself.
    base_models = [r for r in all_rows if r.method == BASELINE_METHOD]
    baselines = [r for r in base_models if r.usable]
    rows = [r for r in all_rows if r.method != BASELINE_METHOD]
    usable = [r for r in rows if r.usable]
    hardware = hardware_named(r.params.get("hardware", "") for r in usable)
    projected, notes = projected_costs(rows, target, hardware) if target else ([], [])
    groups = group_by_config(usable)
    return Analysis(
        experiment=experiment,
        tracking_uri=tracking_uri,
        rows=rows,
        usable=usable,
        left_out=[r for r in rows if not r.usable],
        groups=groups,
        recommendation=recommend(all_rows, target=target, evidence=evidence, hardware=hardware),
        front=pareto_front(usable),
        percents=percent_of_full(rows, evidence),
        hardware=hardware,
        costs=measured_costs(rows, hardware),
        target=target,
        projected=projected,
        projection_notes=notes,
        price_warnings=price_warnings([*hardware.values(), *([target] if target else [])], today),
        today=today,
        effects={
            **{name: knob_effects(groups, knob, evidence) for name, knob in KNOBS.items()},
            **{
                key: knob_effects(variant_groups(groups, key), variant_value(key), evidence)
                for key in variant_knobs()
            },
        },
        baseline=baselines[-1] if baselines else None,
        evidence=evidence,
        inputs=inputs,
        inputs_groups=inputs_groups,
        spend=sweep_spend(rows, base_models),
    )


def analyse_all(
    tracking_uri: str,
    experiment: str,
    target_gpu: str | None = None,
    today: dt.date | None = None,
    cache_dir: Path | None = None,
) -> list[Analysis]:
    """One analysis per set of inputs the sweep's runs were trained and scored on."""
    today = today or dt.date.today()
    rows = load_rows(tracking_uri, experiment)
    target = load_target(target_gpu)
    evidence = Evidence(ScoreSource(cache_dir))
    groups = split_by_inputs(rows)
    return [
        analyse_rows(
            g.rows,
            experiment=experiment,
            tracking_uri=tracking_uri,
            target=target,
            today=today,
            evidence=evidence,
            inputs=g,
            inputs_groups=len(groups),
        )
        for g in groups
    ]


def pick_inputs(groups: list[InputsGroup], wanted: str, experiment: str) -> InputsGroup:
    """The group whose id is `wanted` or starts with it; a ConfigError naming the ids otherwise."""
    matches = [g for g in groups if g.id == wanted] or [
        g for g in groups if len(wanted) >= 4 and g.id.startswith(wanted)
    ]
    if len(matches) != 1:
        why = "matches several" if matches else "matches none"
        have = ", ".join(g.id for g in groups)
        raise ConfigError(
            f"inputs={wanted} {why} of the inputs sweep {experiment!r} ran on (inputs: {have})"
        )
    return matches[0]


def analyse(
    tracking_uri: str,
    experiment: str,
    target_gpu: str | None = None,
    today: dt.date | None = None,
    inputs: str | None = None,
    cache_dir: Path | None = None,
) -> Analysis:
    """The analysis of the sweep's runs on one set of inputs: the only one, or `inputs` (an id
    or a unique prefix of one). A ConfigError when the runs are on several and none is named."""
    today = today or dt.date.today()
    rows = load_rows(tracking_uri, experiment)
    groups = split_by_inputs(rows)
    if inputs is not None:
        chosen = pick_inputs(groups, inputs, experiment)
    elif len(groups) == 1:
        chosen = groups[0]
    else:
        have = ", ".join(f"{g.id} ({len(g.rows)} run{'s' * (len(g.rows) != 1)})" for g in groups)
        raise ConfigError(
            f"sweep {experiment!r} has runs on {len(groups)} different inputs, which are never "
            f"compared: name one with inputs=ID ({have})"
        )
    return analyse_rows(
        chosen.rows,
        experiment=experiment,
        tracking_uri=tracking_uri,
        target=load_target(target_gpu),
        today=today,
        evidence=Evidence(ScoreSource(cache_dir)),
        inputs=chosen,
        inputs_groups=len(groups),
    )
