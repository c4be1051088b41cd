"""The vendor guide's claims, each set against what the sweep measured.

A verdict is "consistent" when the measurement falls in the guide's range (or, for a knob value,
its quality is within the report's tolerance of the best value tried), "not tested" when the
sweep lacks what the comparison needs, and otherwise names the direction of the disagreement.
"""

from __future__ import annotations

import math
import statistics

from ftsweep.methods import method_label
from ftsweep.report.analysis import (
    Analysis,
    Effect,
    best_effect_per_method,
    best_percent_per_method,
    distinct_values,
)
from ftsweep.report.costs import gain_over_full
from ftsweep.report.guide import GUIDE_EPD_GAIN, GUIDE_LR_RATIO, GUIDE_PERCENT_OF_FULL
from ftsweep.report.methods import adapter_method, full_method, is_adapter, is_full
from ftsweep.report.recommendation import MIN_TOLERANCE, quality_varies
from ftsweep.report.render import Section, Table, fmt_mb, fmt_percent, fmt_quality, fmt_ratio

SAME_QUALITY = ("every run scored the same quality", "not tested")


def _overall(verdicts: list[str]) -> str:
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def _in_range(value: float, low: float, high: float, below: str, above: str) -> str:
    if value < low:
        return below
    return above if value > high else "consistent"


def _within(value: float, reference: float, tolerance: float) -> bool:
    return value >= reference - tolerance - 1e-12


def _claim_percent(a: Analysis) -> tuple[str, str]:
    best = best_percent_per_method(a.percents)
    if not best:
        return "no full baseline with quality > 0, or no LoRA-type run", "not tested"
    measured = "; ".join(f"{method_label(m)} {fmt_percent(p.mean)}" for m, p in best.items())
    reached = [p.mean >= GUIDE_PERCENT_OF_FULL[0] for p in best.values()]
    return measured, _overall(["consistent" if r else "not consistent" for r in reached])


def _lora_effects(a: Analysis, knob: str) -> list[Effect]:
    """One LoRA-type method's effects (LoRA's when it ran), so methods are not mixed."""
    effects = a.effects[knob]
    method = adapter_method(e.method for e in effects)
    return [e for e in effects if e.method == method]


def _claim_value(
    a: Analysis, knob: str, value: float, name: str, tolerance: float
) -> tuple[str, str]:
    """Is the guide's value of a knob within tolerance of the best value tried?"""
    effects = _lora_effects(a, knob)
    at = [e for e in effects if e.value == value]
    if not at or distinct_values(effects) < 2:
        return f"{name}={value:g} not compared with another value", "not tested"
    if not quality_varies(a.usable):
        return SAME_QUALITY
    best = max(effects, key=lambda e: e.quality)
    tried = ", ".join(f"{e.value:g}" for e in effects)
    if best is at[0]:
        measured = f"{name}={value:g} is the best of {tried} ({fmt_quality(best.quality)})"
    else:
        measured = (
            f"{name}={value:g}: {fmt_quality(at[0].quality)}; "
            f"best {name}={best.value:g}: {fmt_quality(best.quality)}"
        )
    verdict = "consistent" if _within(at[0].quality, best.quality, tolerance) else "not consistent"
    return measured, verdict


def _claim_lr(a: Analysis) -> tuple[str, str]:
    effects = a.effects["learning_rate"]
    # The guide's LoRA: adapters on an unquantised base.
    full = full_method(e.method for e in effects)
    lora = adapter_method((e.method for e in effects), quantized=False)
    tried = [len({e.value for e in effects if e.method == m}) for m in (full, lora)]
    if full is None or lora is None or min(tried) < 2:
        return "needs at least two learning rates for both full and LoRA", "not tested"
    if not quality_varies(a.usable):
        return SAME_QUALITY
    best = best_effect_per_method(effects)
    ratio = best[lora].value / best[full].value
    measured = (
        f"best {method_label(lora)} lr {best[lora].value:.0e} / best full lr "
        f"{best[full].value:.0e} = {fmt_ratio(ratio)}"
    )
    # Within half an order of magnitude of 10x counts as agreeing.
    agrees = GUIDE_LR_RATIO / math.sqrt(10) <= ratio <= GUIDE_LR_RATIO * math.sqrt(10)
    return measured, "consistent" if agrees else "not consistent"


def _claim_epd(a: Analysis) -> tuple[str, str]:
    gains = {m: x for m, x in gain_over_full(a.costs).items() if not is_full(m)}
    if not gains:
        return "needs full and LoRA-type runs", "not tested"
    measured = "; ".join(f"{method_label(m)} {fmt_ratio(x)}" for m, x in gains.items())
    low, high = GUIDE_EPD_GAIN
    verdicts = [
        _in_range(x, low, high, "fewer than claimed", "more than claimed") for x in gains.values()
    ]
    return measured, _overall(verdicts)


def _claim_storage(a: Analysis) -> tuple[str, str]:
    storage = {c.method: c.storage_mb for c in a.costs}
    adapters = [mb for m, mb in storage.items() if is_adapter(m) and math.isfinite(mb)]
    full = full_method(storage)
    if full is None or not adapters:
        return "needs full and LoRA-type runs", "not tested"
    adapter = statistics.fmean(adapters)
    ratio = storage[full] / adapter if adapter > 0 else math.inf
    measured = f"adapter {fmt_mb(adapter)} against full {fmt_mb(storage[full])}: {fmt_ratio(ratio)} smaller"
    # 14 GB against 50-200 MB is 70-280x; the ratio grows with model size and shrinks with rank.
    return measured, _in_range(
        ratio, 70, 280, "smaller ratio than claimed", "larger ratio than claimed"
    )


def claims_section(a: Analysis) -> Section:
    tolerance = a.recommendation.tolerance if a.recommendation else MIN_TOLERANCE
    rows = [
        ["LoRA reaches 95-99% of full fine-tuning quality", *_claim_percent(a)],
        ["r=8 captures style and format", *_claim_value(a, "rank", 8, "r", tolerance)],
        [
            "alpha = 2 x rank is a good start",
            *_claim_value(a, "alpha_ratio", 2, "alpha/r", tolerance),
        ],
        ["LoRA wants about 10x full fine-tuning's learning rate", *_claim_lr(a)],
        ["LoRA gives 5-20x more experiments per dollar", *_claim_epd(a)],
        ["An adapter is 50-200 MB against 14 GB (70-280x smaller)", *_claim_storage(a)],
    ]
    return Section(
        "The guide's claims, re-measured",
        [
            f"A claim is consistent when the measurement falls in the guide's range, or quality is within {tolerance:.3f} of the best.",
            Table(["the guide says", "measured here", "verdict"], rows),
        ],
    )
