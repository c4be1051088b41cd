"""The report's sections on quality: against cost (the Pareto front), LoRA-type methods as a share
of full fine-tuning, and lift over the untrained base model with what fine-tuning forgot."""

from __future__ import annotations

import math

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, best_full_run, best_percent_per_method, lift_over_base
from ftsweep.report.guide import percent_verdict
from ftsweep.report.methods import is_adapter, is_full
from ftsweep.report.render import Block, Section, Table, fmt_percent, fmt_quality, fmt_usd
from ftsweep.report.sections_common import figure_blocks


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
            "The best full fine-tuning run scored 0: a percentage of it is undefined, so the guide's 95-99% cannot be checked."
        ]
    out = []
    chosen = a.recommendation.group.key if a.recommendation else None
    for p in a.percents:
        if p.group.key == chosen:
            out.append(
                f"The recommended configuration reaches {fmt_percent(p.mean)} of the best full fine-tuning run: {percent_verdict(p.mean)}."
            )
    for method, p in best_percent_per_method(a.percents).items():
        spread = (
            f" (seed range {fmt_percent(p.low)} to {fmt_percent(p.high)})"
            if p.group.n > 1
            else " (one seed)"
        )
        out.append(
            f"{method_label(method)} reached {fmt_percent(p.mean)} of the best full fine-tuning run with {p.group.knobs}"
            f"{spread}: {percent_verdict(p.mean)}."
        )
    return out


def quality_vs_cost(a: Analysis, figures: dict[str, str]) -> Section:
    if not a.usable:
        return Section("Quality against cost", ["No finished runs to plot."])
    pick = a.recommendation.run.run_id if a.recommendation else None
    rows = [
        [
            r.name,
            method_label(r.method),
            fmt_quality(r.quality),
            fmt_usd(r.cost_usd),
            "yes" if r.run_id == pick else "",
        ]
        for r in a.front
    ]
    return Section(
        "Quality against cost",
        [
            *figure_blocks(figures, "quality_vs_cost"),
            "The Pareto front: runs that no other run beats on both cost and quality, cheapest first.",
            Table(["run", "method", "quality", "cost per run", "recommended"], rows),
        ],
    )


def versus_full(a: Analysis, figures: dict[str, str]) -> Section:
    title = "LoRA and QLoRA as a share of full fine-tuning"
    baseline = best_full_run(a.usable)
    if a.percents is None or baseline is None:
        return Section(title, percent_evidence(a))
    rows = [
        [
            method_label(p.group.method),
            p.group.knobs,
            str(p.group.n),
            fmt_percent(p.mean),
            f"{fmt_percent(p.low)} to {fmt_percent(p.high)}" if p.group.n > 1 else "one seed",
            percent_verdict(p.mean),
        ]
        for p in a.percents
    ]
    headers = [
        "method",
        "configuration",
        "seeds",
        "% of full (mean)",
        "seed range",
        "against the guide",
    ]
    return Section(
        title,
        [
            f"Baseline: the best full fine-tuning run, {baseline.name}, quality {fmt_quality(baseline.quality)}.",
            Table(headers, rows),
            *figure_blocks(figures, "percent_of_full"),
        ],
    )


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
    lifts = lift_over_base(a.usable, base)
    rows = [
        [
            method_label(x.method),
            str(x.runs),
            fmt_quality(x.best_quality),
            f"{x.lift:+.3f}",
            f"{x.mean_forgetting:+.3f}" if math.isfinite(x.mean_forgetting) else "n/a",
        ]
        for x in lifts
    ]
    blocks: list[Block] = [
        f"The base model, untrained, scores {fmt_quality(base.quality)} on this task "
        f"(general-text loss {base.metrics.get('general_text_loss', math.nan):.3f} nats). "
        "Forgetting is the change in that loss after fine-tuning, on text outside the task: "
        "positive means the model got worse at what it already knew (Biderman et al. 2024 "
        "report that LoRA forgets less than full fine-tuning)."
    ]
    if rows:
        blocks.append(
            Table(["method", "runs", "best quality", "lift", "mean forgetting (nats)"], rows)
        )
        if all(x.lift <= 0 for x in lifts):
            blocks.append(
                "No method beat the untrained base model: train longer, raise the learning "
                "rate, or check that the task's replies fit train.seq_len."
            )
    return Section(title, blocks)
