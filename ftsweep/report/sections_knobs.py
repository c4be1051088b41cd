"""The report's sections on knobs: quality against LoRA rank, learning rate (with the LoRA to
full ratio), alpha/rank and target modules, each per method and only where the sweep varied it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, Effect, best_effect_per_method, distinct_values
from ftsweep.report.guide import GUIDE_LR_RATIO
from ftsweep.report.methods import adapter_method, full_method
from ftsweep.report.render import Block, Section, Table, fmt_estimate, fmt_ratio
from ftsweep.report.sections_common import figure_blocks

# knob -> (title, value column, how a value reads, what one value tried cannot tell)
KNOB_SECTIONS: dict[str, tuple[str, str, Callable[[float | str], str], str]] = {
    "rank": (
        "Quality against rank",
        "rank r",
        str,
        "Only r={value} was tried: the sweep cannot tell how quality changes with rank.",
    ),
    "learning_rate": (
        "Best learning rate per method",
        "learning rate",
        lambda v: f"{v:.0e}",
        "Only lr={value} was tried: the sweep cannot tell which learning rate is best.",
    ),
    "alpha_ratio": (
        "Alpha/rank ratio",
        "alpha / r",
        lambda v: f"{v:g}",
        "Only alpha/r={value} was tried: the sweep cannot test the guide's alpha = 2 x rank.",
    ),
    "targets": (
        "Target modules",
        "targets",
        str,
        "Only targets={value} were tried: the sweep cannot tell attention-only from MLP or all linear layers.",
    ),
}
PLOT_OF_KNOB = {"rank": "quality_vs_rank"}  # other knobs' plots are named after the knob


def _effect_rows(effects: list[Effect], value_text) -> list[list[str]]:
    return [
        [
            method_label(e.method),
            value_text(e.value),
            f"{len(e.groups)} / {len(e.rows)}",
            e.best.knobs,
            ", ".join(f"{lr:.0e}" for lr in e.learning_rates) or "?",
            fmt_estimate(e.estimate.value, e.estimate.low, e.estimate.high),
            f"{statistics.fmean(r.metrics.get('trainable_params', math.nan) for r in e.best.rows):,.0f}",
        ]
        for e in effects
    ]


def _knob_section(a: Analysis, figures: dict[str, str], knob: str) -> Section | None:
    effects = a.effects[knob]
    if not effects:
        return None
    title, header, value_text, one_value = KNOB_SECTIONS[knob]
    blocks: list[Block] = [
        Table(
            [
                "method",
                header,
                "configurations / runs",
                "best configuration at it",
                "learning rates tried",
                "its quality [95% interval]",
                "trainable params",
            ],
            _effect_rows(effects, value_text),
        )
    ]
    if distinct_values(effects) < 2:
        blocks.append(one_value.format(value=value_text(effects[0].value)))
    else:
        best = best_effect_per_method(effects)
        blocks.append(
            "Best per method: "
            + "; ".join(
                f"{method_label(m)} {value_text(e.value)} (quality {fmt_estimate(e.quality, e.estimate.low, e.estimate.high)})"
                for m, e in best.items()
            )
            + ". Each value is shown at its best configuration (its other knobs, learning rate included, at their "
            "best); where intervals overlap, the values are not told apart. The guide's claims section says which "
            "comparisons count."
        )
    if knob == "learning_rate" and (note := _lr_ratio_note(a)):
        blocks.insert(1, note)
    blocks += figure_blocks(figures, PLOT_OF_KNOB.get(knob, knob))
    return Section(title, blocks)


def knobs(a: Analysis, figures: dict[str, str]) -> list[Section]:
    sections = [_knob_section(a, figures, knob) for knob in KNOB_SECTIONS]
    return [s for s in sections if s is not None]


def _lr_ratio_note(a: Analysis) -> str | None:
    """The LoRA-type learning rate against full fine-tuning's, beside the guide's ~10x."""
    effects = a.effects["learning_rate"]
    best = best_effect_per_method(effects)
    full, method = full_method(best), adapter_method(best)
    if full is None or method is None:
        return None
    ratio = best[method].value / best[full].value
    guide = f"the guide: about {GUIDE_LR_RATIO:g}x; full 5e-6 to 1e-5, LoRA 1e-4 to 3e-4 at 7B"
    tried = [len({e.value for e in effects if e.method == m}) for m in (full, method)]
    if min(tried) < 3 or a.flat:
        return (
            f"The {method_label(method)} learning rate set here is {fmt_ratio(ratio)} the full fine-tuning one ({guide}); "
            "the sweep did not vary both enough (three or more rates each) to say which ratio is best."
        )
    return (
        f"Best {method_label(method)} learning rate / best full learning rate = {fmt_ratio(ratio)} by point estimate "
        f"({guide}); the claims section compares the rates tied with each best."
    )
