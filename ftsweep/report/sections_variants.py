"""The report's sections on method variants: one per variant knob the sweep varied (DoRA,
rsLoRA, the adapters' init, LoRA+, full fine-tuning's optimizer), each value at its best
configuration (its learning rate the best of those it was tried at) with its quality interval
and cost per run, then each against the method's plain variant."""

from __future__ import annotations

import math
import statistics

from ftsweep.methods import find_method, method_label
from ftsweep.report.analysis import Analysis, Effect, variant_knobs
from ftsweep.report.costs import group_cost_usd
from ftsweep.report.methods import report_order
from ftsweep.report.render import (
    Bullets,
    Section,
    Table,
    fmt_diff,
    fmt_estimate,
    fmt_ratio,
    fmt_usd,
)

TITLES = {
    "use_dora": "Variant: DoRA (method.use_dora)",
    "use_rslora": "Variant: rsLoRA, scale alpha / sqrt(r) (method.use_rslora)",
    "init": "Variant: how the adapters start (method.init)",
    "loraplus_lr_ratio": "Variant: LoRA+, B's learning rate over A's (method.loraplus_lr_ratio)",
    "optimizer": "Variant: the optimizer (method.optimizer)",
}


def value_text(value: str) -> str:
    """A recorded knob value as the report shows it: on/off for flags and an unset ratio."""
    words = {"True": "on", "False": "off", "None": "off"}
    if value in words:
        return words[value]
    try:
        return f"{float(value):g}"
    except ValueError:
        return value


def _plain(method: str, key: str) -> str:
    """The method's default for the knob, as a run that did not set it reads."""
    return str(find_method(method).knobs.model_fields[key].default)


def _varied(effects: list[Effect], key: str) -> list[Effect]:
    """The effects of the methods that were tried at two values of the knob or more, each
    method's plain variant first."""
    methods = {e.method for e in effects}
    varied = {m for m in methods if len({e.value for e in effects if e.method == m}) > 1}
    return sorted(
        (e for e in effects if e.method in varied),
        key=lambda e: (report_order(e.method), e.value != _plain(e.method, key), str(e.value)),
    )


def _cost(a: Analysis, effect: Effect) -> float:
    return group_cost_usd(effect.best.rows, a.target, a.hardware)


def _rows(a: Analysis, key: str, effects: list[Effect]) -> list[list[str]]:
    out = []
    for e in effects:
        plain = " (plain)" if e.value == _plain(e.method, key) else ""
        trainable = statistics.fmean(
            r.metrics.get("trainable_params", math.nan) for r in e.best.rows
        )
        out.append(
            [
                method_label(e.method),
                value_text(str(e.value)) + plain,
                f"{len(e.groups)} / {len(e.rows)}",
                f"{e.best.first.learning_rate:.0e}" if e.best.first.learning_rate else "?",
                ", ".join(f"{lr:.0e}" for lr in e.learning_rates) or "?",
                fmt_estimate(e.estimate.value, e.estimate.low, e.estimate.high),
                fmt_usd(_cost(a, e)),
                f"{trainable:,.0f}",
            ]
        )
    return out


def _against_plain(a: Analysis, key: str, effects: list[Effect]) -> list[str]:
    """Each value's best configuration against the plain variant's, in quality and cost."""
    items = []
    for method in dict.fromkeys(e.method for e in effects):
        mine = [e for e in effects if e.method == method]
        plain = next((e for e in mine if e.value == _plain(method, key)), None)
        if plain is None:
            items.append(
                f"{method_label(method)}: the plain variant ({value_text(_plain(method, key))}) "
                "was not tried, so nothing is compared against it."
            )
            continue
        for e in mine:
            if e is plain:
                continue
            d = a.evidence.difference(e.best, plain.best)
            cost, base = _cost(a, e), _cost(a, plain)
            cost_text = (
                f"at {fmt_ratio(cost / base)} the plain one's cost per run"
                if base > 0 and math.isfinite(cost)
                else "cost not comparable"
            )
            items.append(
                f"{method_label(method)} {value_text(str(e.value))} minus {value_text(str(plain.value))}: "
                f"quality {fmt_diff(d.value, d.low, d.high)} ({d.how}), {cost_text}."
            )
    return items


def _variant_section(a: Analysis, key: str) -> Section | None:
    effects = _varied(a.effects.get(key, []), key)
    if not effects:
        return None
    table = Table(
        [
            "method",
            f"method.{key}",
            "configurations / runs",
            "best learning rate",
            "learning rates tried",
            "quality at it [95% interval]",
            "cost per run",
            "trainable params",
        ],
        _rows(a, key, effects),
    )
    lead = (
        "Each value at its best configuration: its learning rate the best of the rates it was "
        "tried at (a variant shifts the best rate, so each is compared at its own). The plain "
        "row is the method with every variant knob at its default. Where the interval of a "
        "difference includes 0 the two are not told apart."
    )
    return Section(
        TITLES.get(key, f"Variant: method.{key}"),
        [lead, table, Bullets(_against_plain(a, key, effects))],
    )


def variants(a: Analysis) -> list[Section]:
    """A section per variant knob the sweep varied, in the registry's order of knobs."""
    sections = [_variant_section(a, key) for key in variant_knobs()]
    return [s for s in sections if s is not None]
