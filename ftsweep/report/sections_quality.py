"""The report's sections on quality: against cost (the Pareto front), LoRA-type methods as a share
of full fine-tuning, and lift over the untrained base model with what fine-tuning forgot."""

from __future__ import annotations

import math

from ftsweep.methods import method_label
from ftsweep.report.analysis import (
    Analysis,
    best_full_group,
    best_percent_per_method,
    lift_over_base,
)
from ftsweep.report.claims import claim_percent
from ftsweep.report.evidence import ConfigGroup
from ftsweep.report.guide import percent_verdict
from ftsweep.report.methods import is_adapter, is_full
from ftsweep.report.render import (
    Block,
    Section,
    Table,
    fmt_diff,
    fmt_estimate,
    fmt_percent_interval,
    fmt_quality,
    fmt_usd,
)
from ftsweep.report.sections_common import figure_blocks


def _pct(p) -> str:
    return fmt_percent_interval(p.mean, p.low, p.high)


def percent_evidence(a: Analysis) -> list[str]:
    """Sentences on LoRA-type quality as a share of full fine-tuning's, or why there is none."""
    methods = {r.method for r in a.usable}
    if not any(is_adapter(m) for m in methods):
        return ["No LoRA or QLoRA run finished: the guide's 95-99% claim is untested."]
    if not any(is_full(m) for m in methods):
        return [
            "No full fine-tuning baseline in this sweep: LoRA's share of full quality, and the guide's 95-99%, cannot be checked."
        ]
    if a.percents is None:
        return [
            "The best full fine-tuning configuration scored 0: a percentage of it is undefined, so the guide's 95-99% cannot be checked."
        ]
    out = []
    rec = a.recommendation
    chosen = rec.group.ids if rec and rec.group else None
    for p in a.percents:
        if p.group.ids == chosen:
            out.append(
                f"The recommended configuration reaches {_pct(p)} of the best full fine-tuning configuration: "
                f"{percent_verdict(p.low, p.high)}."
            )
    claim = claim_percent(a)
    for method, p in best_percent_per_method(a.percents).items():
        seeds = f"{p.group.n} seeds" if p.group.n > 1 else "one seed"
        out.append(
            f"{method_label(method)} reached {_pct(p)} of the best full fine-tuning configuration with {p.group.knobs} "
            f"({seeds}; {p.comparison.how if p.comparison else 'no interval'}): {percent_verdict(p.low, p.high)}."
        )
    out.append(f"The guide's 95-99% claim: {claim.verdict} ({claim.reason}).")
    return out


def quality_vs_cost(a: Analysis, figures: dict[str, str]) -> Section:
    if not a.usable:
        return Section("Quality against cost", ["No finished runs to plot."])
    pick = a.recommendation.run if a.recommendation else None
    rows = [
        [
            r.name,
            method_label(r.method),
            _run_quality(a, r),
            fmt_usd(r.cost_usd),
            "yes" if pick is not None and r.run_id == pick.run_id else "",
        ]
        for r in a.front
    ]
    return Section(
        "Quality against cost",
        [
            *figure_blocks(figures, "quality_vs_cost"),
            "The Pareto front: runs that no other run beats on both cost and quality (by point estimate), "
            "cheapest first. Where intervals overlap, a run off the front may be as good: the recommendation "
            "compares configurations with their intervals.",
            Table(["run", "method", "quality [95% interval]", "cost per run", "recommended"], rows),
        ],
    )


def _run_quality(a: Analysis, row) -> str:
    e = a.evidence.quality(ConfigGroup([row]))
    return fmt_estimate(e.value, e.low, e.high)


def versus_full(a: Analysis, figures: dict[str, str]) -> Section:
    title = "LoRA and QLoRA as a share of full fine-tuning"
    baseline = best_full_group(a.groups, a.evidence)
    if a.percents is None or baseline is None:
        return Section(title, percent_evidence(a))
    rows = [
        [
            method_label(p.group.method),
            p.group.knobs,
            str(p.group.n),
            _pct(p),
            p.comparison.how if p.comparison else "",
            percent_verdict(p.low, p.high),
        ]
        for p in a.percents
    ]
    headers = [
        "method",
        "configuration",
        "seeds",
        "% of full [95% interval]",
        "compared",
        "against the guide",
    ]
    e = a.estimate(baseline)
    return Section(
        title,
        [
            f"Baseline: the best full fine-tuning configuration, {baseline.knobs}, quality "
            f"{fmt_estimate(e.value, e.low, e.high)}. Both ends of each interval are checked against 95-99%.",
            Table(headers, rows),
            *figure_blocks(figures, "percent_of_full"),
        ],
    )


def _group_quality(a: Analysis, group: ConfigGroup) -> str:
    e = a.evidence.quality(group)
    return fmt_estimate(e.value, e.low, e.high)


def lift_and_forgetting(a: Analysis) -> Section:
    title = "Lift over the base model, and forgetting"
    if a.baseline is None:
        return Section(
            title,
            [
                "The untrained base model was not measured in this sweep (sweep.baseline=false), "
                "so no lift can be given."
            ],
        )
    base = a.baseline
    lifts = lift_over_base(a.usable, base, a.evidence)
    rows = [
        [
            method_label(x.method),
            str(x.runs),
            _group_quality(a, x.best) if x.best else fmt_quality(x.best_quality),
            fmt_diff(x.comparison.value, x.comparison.low, x.comparison.high)
            if x.comparison
            else f"{x.lift:+.3f}",
            "yes" if x.comparison and x.comparison.positive else "no",
            f"{x.mean_forgetting:+.3f}" if math.isfinite(x.mean_forgetting) else "n/a",
        ]
        for x in lifts
    ]
    blocks: list[Block] = [
        f"The base model, untrained, scores {_run_quality(a, base)} on this task "
        f"(general-text loss {base.metrics.get('general_text_loss', math.nan):.3f} nats). "
        "Forgetting is the change in that loss after fine-tuning, on text outside the task: "
        "positive means the model got worse at what it already knew (Biderman et al. 2024 "
        "report that LoRA forgets less than full fine-tuning)."
    ]
    if rows:
        blocks.append(
            Table(
                [
                    "method",
                    "runs",
                    "best configuration's quality [95% interval]",
                    "lift [95% interval]",
                    "beyond noise",
                    "mean forgetting (nats)",
                ],
                rows,
            )
        )
        if not any(x.comparison and x.comparison.positive for x in lifts):
            blocks.append(
                "No method beat the untrained base model beyond noise: train longer, raise the learning "
                "rate, or check that the task's replies fit train.seq_len and train.max_new_tokens."
            )
    return Section(title, blocks)
