"""The claim on quality: LoRA against full fine-tuning, each at its best learning rate."""

from __future__ import annotations

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.claims.verdicts import (
    NOT_TESTABLE,
    SUPPORTED,
    Claim,
    best_group,
    est_text,
    flat_reason,
    learning_rates,
    lora_method,
    quality_row,
    range_verdict,
)
from ftsweep.report.guide import (
    GUIDE_PERCENT_OF_FULL,
)
from ftsweep.report.methods import full_method, is_adapter
from ftsweep.report.render import (
    Table,
    fmt_percent_interval,
)


def claim_percent(a: Analysis) -> Claim:
    text = "LoRA reaches 95-99% of full fine-tuning quality"
    full_name, lora_name = full_method({g.method for g in a.groups}), lora_method(a)
    if full_name is None or lora_name is None:
        return Claim(
            text, NOT_TESTABLE, "needs full fine-tuning and LoRA-type runs on the same inputs"
        )
    full, lora = best_group(a, full_name), best_group(a, lora_name)
    lo, hi = GUIDE_PERCENT_OF_FULL
    rows = []
    for method in dict.fromkeys([lora_name, *(g.method for g in a.groups if is_adapter(g.method))]):
        g = best_group(a, method)
        c = a.evidence.ratio(g, full)
        rows.append(
            quality_row(a, g, fmt_percent_interval(c.value * 100, c.low * 100, c.high * 100), c.how)
        )
    rows.append(quality_row(a, full, "100% (the reference)", ""))
    table = Table(
        [
            "configuration (best of its method)",
            "quality [95% interval]",
            "learning rates tried",
            "learning rate tuned",
            "% of full [95% interval]",
            "compared",
        ],
        rows,
    )
    c = a.evidence.ratio(lora, full)
    low, high = c.low * 100, c.high * 100
    measured = f"{method_label(lora_name)} at {fmt_percent_interval(c.value * 100, low, high)} of full fine-tuning"
    fe = a.estimate(full)
    reasons = [
        flat_reason(a),
        "full fine-tuning's best quality is 0: a share of it is undefined"
        if not fe.value > 0
        else None,
    ]
    if fe.at_ceiling() and not (c.known and high < lo):
        # A higher ceiling could only lower the share: only "below 95%" would stand.
        reasons.append(
            f"full fine-tuning is at the ceiling ({est_text(fe)}): how far above {method_label(lora_name)} it would go cannot be measured"
        )
    if fe.at_floor():
        reasons.append(f"full fine-tuning is at the floor ({est_text(fe)})")
    reasons += [learning_rates(a, g).untuned() for g in (full, lora)]
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    if not c.known:
        return Claim(text, NOT_TESTABLE, f"{measured}: no interval ({c.how})", table)
    verdict = range_verdict(low, high, lo, hi)
    if verdict == NOT_TESTABLE:
        return Claim(
            text,
            verdict,
            f"{measured}: the interval reaches across an end of 95-99%, so the sweep cannot tell (more examples or seeds narrow it)",
            table,
        )
    where = "inside 95-99%" if verdict == SUPPORTED else ("below 95%" if high < lo else "above 99%")
    return Claim(text, verdict, f"{measured}: the whole interval is {where}", table)
