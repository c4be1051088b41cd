"""The claims on knobs: rank, alpha, target modules and the learning-rate ratio."""

from __future__ import annotations

import math
from collections.abc import Callable

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, Effect
from ftsweep.report.claims.verdicts import (
    CONTRADICTED,
    NOT_TESTABLE,
    SUPPORTED,
    Claim,
    best_group,
    cmp_text,
    config_text,
    est_text,
    flat_reason,
    learning_rates,
    limit_reason,
    lora_method,
    range_verdict,
    untestable_comparison,
)
from ftsweep.report.guide import (
    GUIDE_COMPARABLE_SHARE,
    GUIDE_LR_RATIO_RANGE,
)
from ftsweep.report.methods import adapter_method, full_method
from ftsweep.report.render import (
    Table,
    fmt_quality,
    fmt_ratio,
)


def _value_claim(
    a: Analysis,
    text: str,
    knob: str,
    value: float | str,
    show: Callable[[float | str], str],
) -> Claim:
    """Is the guide's value of a knob not below the best value tried by more than the margin?"""
    method = lora_method(a)
    effects = [e for e in a.effects[knob] if e.method == method]
    name = f"{show(value)}"
    at = next((e for e in effects if e.value == value), None)
    tried = ", ".join(show(e.value) for e in effects) or "none"
    if method is None or len({e.value for e in effects}) < 2:
        return Claim(text, NOT_TESTABLE, f"the knob was not varied (tried: {tried})")
    if at is None:
        return Claim(text, NOT_TESTABLE, f"{name} was not tried (tried: {tried})")
    others = [e for e in effects if e is not at]
    rival = max(others, key=lambda e: e.quality)  # the best value but the guide's
    diff = a.evidence.difference(rival.best, at.best)  # rival - the guide's value
    margin = GUIDE_COMPARABLE_SHARE * a.estimate(rival.best).value
    table = _effects_table(a, effects, at, show)
    measured = f"{name}: {est_text(at.estimate)}; best other, {show(rival.value)}: {est_text(rival.estimate)}; difference {cmp_text(diff)}"
    blocked = untestable_comparison(
        a, text, measured, table, diff, [(show(at.value), at), (show(rival.value), rival)]
    )
    if blocked:
        return blocked
    bar = f"{margin:.3f} (5% of {fmt_quality(a.estimate(rival.best).value)})"
    if diff.high <= margin:
        return Claim(text, SUPPORTED, f"{measured}: it is below the best by at most {bar}", table)
    if diff.low > margin:
        return Claim(
            text, CONTRADICTED, f"{measured}: it is below the best by more than {bar}", table
        )
    return Claim(
        text,
        NOT_TESTABLE,
        f"{measured}: the interval reaches both sides of {bar}, so the sweep cannot tell",
        table,
    )


def _effects_table(a: Analysis, effects: list[Effect], at: Effect, show) -> Table:
    rows = []
    for e in effects:
        lr = learning_rates(a, e.best)
        rows.append(
            [
                show(e.value) + (" (the guide's)" if e is at else ""),
                e.best.knobs,
                str(len(e.groups)),
                ", ".join(f"{x:.0e}" for x in lr.tried) or "?",
                "yes" if lr.untuned() is None else "no",
                est_text(e.estimate),
            ]
        )
    return Table(
        [
            "value",
            "best configuration at it",
            "configurations",
            "learning rates tried",
            "learning rate tuned",
            "quality [95% interval]",
        ],
        rows,
    )


def claim_rank(a: Analysis) -> Claim:
    return _value_claim(a, "r=8 captures style and format", "rank", 8, lambda v: f"r={v}")


def claim_alpha(a: Analysis) -> Claim:
    return _value_claim(
        a, "alpha = 2 x rank is a good start", "alpha_ratio", 2, lambda v: f"alpha/r={v:g}"
    )


def claim_targets(a: Analysis) -> Claim:
    text = "Adding the MLP layers to attention raises quality"
    method = lora_method(a)
    effects = {e.value: e for e in a.effects["targets"] if e.method == method}
    if "attention" not in effects or "all-linear" not in effects:
        tried = ", ".join(map(str, effects)) or "none"
        return Claim(
            text, NOT_TESTABLE, f"needs LoRA on attention and on all-linear (tried: {tried})"
        )
    att, both = effects["attention"], effects["all-linear"]
    diff = a.evidence.difference(both.best, att.best)
    table = _effects_table(a, list(effects.values()), both, str)
    measured = f"all-linear {est_text(both.estimate)} against attention {est_text(att.estimate)}: difference {cmp_text(diff)}"
    blocked = untestable_comparison(
        a, text, measured, table, diff, [("attention", att), ("all-linear", both)]
    )
    if blocked:
        return blocked
    if diff.positive:
        return Claim(text, SUPPORTED, f"{measured}: higher beyond noise", table)
    if diff.negative:
        return Claim(text, CONTRADICTED, f"{measured}: lower beyond noise", table)
    return Claim(text, NOT_TESTABLE, f"{measured}: the interval includes 0", table)


def claim_lr(a: Analysis) -> Claim:
    text = "LoRA wants about 10x full fine-tuning's learning rate"
    full_name = full_method({g.method for g in a.groups})
    lora_name = adapter_method({g.method for g in a.groups}, quantized=False)
    if full_name is None or lora_name is None:
        return Claim(text, NOT_TESTABLE, "needs full fine-tuning and LoRA runs on the same inputs")
    rates = {m: learning_rates(a, best_group(a, m)) for m in (full_name, lora_name)}
    rows = [
        [
            config_text(lr.setting),
            ", ".join(f"{x:.0e}" for x in lr.tried),
            f"{lr.best:.0e}" if lr.best else "?",
            ", ".join(f"{x:.0e}" for x in lr.tied),
            est_text(a.estimate(lr.setting)),
        ]
        for lr in rates.values()
    ]
    table = Table(
        [
            "best setting of each method",
            "learning rates tried",
            "best",
            "tied with the best",
            "best quality [95% interval]",
        ],
        rows,
    )
    full, lora = rates[full_name], rates[lora_name]
    low = min(lora.tied) / max(full.tied) if full.tied and lora.tied else math.nan
    high = max(lora.tied) / min(full.tied) if full.tied and lora.tied else math.nan
    measured = f"the learning rates tied with each method's best give a ratio of {fmt_ratio(low)} to {fmt_ratio(high)} (about 10x: {fmt_ratio(GUIDE_LR_RATIO_RANGE[0])} to {fmt_ratio(GUIDE_LR_RATIO_RANGE[1])})"
    reasons = [flat_reason(a)]
    for lr in (full, lora):
        if lr.flat:
            reasons.append(
                f"{config_text(lr.setting)}: quality is flat across the learning rates tried, so none is best"
            )
        reasons.append(lr.untuned())
        if (
            lr.tied
            and len(lr.tried) >= 3
            and (lr.tied[0] == lr.tried[0] or lr.tied[-1] == lr.tried[-1])
        ):
            reasons.append(
                f"{config_text(lr.setting)}: rates tied with its best reach the edge of those tried"
            )
    reasons.append(limit_reason([(method_label(m), a.estimate(rates[m].setting)) for m in rates]))
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    verdict = range_verdict(low, high, *GUIDE_LR_RATIO_RANGE)
    if verdict == NOT_TESTABLE:
        return Claim(text, verdict, f"{measured}: the range reaches across an end of it", table)
    return Claim(text, verdict, measured, table)
