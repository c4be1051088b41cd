"""The report's sections on quality: against cost (the Pareto front), LoRA-type methods as a share
of full fine-tuning, and lift over the untrained base model with what fine-tuning forgot."""

from __future__ import annotations

import math

from ftsweep.methods import find_method, method_label
from ftsweep.report.analysis import (
    Analysis,
    best_full_group,
    best_percent_per_method,
    lift_over_base,
)
from ftsweep.report.claims import claim_percent
from ftsweep.report.evidence import ConfigGroup
from ftsweep.report.forgetting import Forgetting, group_forgetting
from ftsweep.report.guide import percent_verdict
from ftsweep.report.methods import by_method, is_adapter, is_full
from ftsweep.report.render import (
    Block,
    Figure,
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


def lift_and_forgetting(a: Analysis, figures: dict[str, str] | None = None) -> Section:
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
            _forgetting(group_forgetting(x.best)) if x.best else "n/a",
        ]
        for x in lifts
    ]
    blocks: list[Block] = [_base_sentence(a, base)]
    if rows:
        blocks.append(
            Table(
                [
                    "method",
                    "runs",
                    "best configuration's quality [95% interval]",
                    "lift [95% interval]",
                    "beyond noise",
                    "its forgetting, nats [95% interval]",
                ],
                rows,
            )
        )
        if not any(x.comparison and x.comparison.positive for x in lifts):
            blocks.append(
                "No method beat the untrained base model beyond noise: train longer, raise the learning "
                "rate, or check that the task's replies fit train.seq_len and train.max_new_tokens."
            )
    blocks += _quantization_sentences(a)
    if figures and "lift_vs_forgetting" in figures:
        blocks.append(Figure(figures["lift_vs_forgetting"], LIFT_VS_FORGETTING_CAPTION))
    return Section(title, blocks)


LIFT_VS_FORGETTING_CAPTION = (
    "Lift over the base model against forgetting: the best configuration of each method at each "
    "LoRA rank, bars the 95% interval of each (lift: paired over examples; forgetting: paired over "
    "windows of general text). Up is better on the task, right is worse at general text."
)


def _forgetting(f: Forgetting) -> str:
    return fmt_diff(f.value, f.low, f.high) if f.known else "n/a"


def _base_sentence(a: Analysis, base) -> str:
    loss = base.metrics.get("general_text_loss", math.nan)
    tokens = base.metrics.get("forgetting_tokens", math.nan)
    over = f" over {tokens:,.0f} tokens" if math.isfinite(tokens) else ""
    return (
        f"The base model, untrained, scores {_run_quality(a, base)} on this task (general-text "
        f"loss {loss:.3f} nats a token{over}). Forgetting is the change in that loss after "
        "fine-tuning, on the same text outside the task, with a 95% interval paired over "
        "256-token windows: positive means the model got worse at what it already knew "
        "(Biderman et al. 2024 report that LoRA forgets less than full fine-tuning)."
    )


def _quantization_sentences(a: Analysis) -> list[str]:
    """What quantising the base cost, for each method that quantises it (the registry says
    which): its forgetting is measured against the unquantised base, so it includes this."""
    out = []
    for method, runs in by_method(a.usable).items():
        spec = find_method(method)
        measured = [r for r in runs if math.isfinite(r.metrics.get("quantization_loss", math.nan))]
        if spec is None or not spec.quantized or not measured:
            continue
        m = measured[0].metrics
        cost = fmt_diff(
            m["quantization_loss"],
            m.get("quantization_loss_ci_low", math.nan),
            m.get("quantization_loss_ci_high", math.nan),
        )
        out.append(
            f"{method_label(method)} quantises the base it trains on: that alone costs {cost} "
            f"nats a token on general text (its run {measured[0].name}). Its forgetting is measured "
            "against the unquantised base, as every method's is, so it includes this cost."
        )
    return out
