"""The report's document: its opening (what was recorded, the recommendation with its evidence,
what the sweep cannot tell) and the order of every section (`build_document`).

Each section is a function from the analysis to blocks of plain text; the topic sections live in
`sections_quality`, `sections_cost`, `sections_knobs` and `sections_runs`.
"""

from __future__ import annotations

from ftsweep.config.compose import compose_group, group_options
from ftsweep.methods import all_methods, method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.claims import claims_section
from ftsweep.report.recommendation import MIN_TOLERANCE, quality_varies, seed_spread
from ftsweep.report.render import (
    Bullets,
    Document,
    Lead,
    Section,
    fmt_quality,
    fmt_ratio,
    fmt_usd,
)
from ftsweep.report.sections_common import param_values, plural
from ftsweep.report.sections_cost import cost_table, epd_evidence
from ftsweep.report.sections_knobs import knobs
from ftsweep.report.sections_quality import (
    lift_and_forgetting,
    percent_evidence,
    quality_vs_cost,
    versus_full,
)
from ftsweep.report.sections_runs import all_runs, left_out
from ftsweep.tracking.redact import redact_uri


def intro(a: Analysis) -> list[str]:
    counts: dict[str | None, int] = {}
    for row in a.left_out:
        counts[row.left_out_reason] = counts.get(row.left_out_reason, 0) + 1
    left = "; ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"
    rows = a.usable or a.rows
    return [
        f"{plural(len(a.rows), 'run')} recorded in {redact_uri(a.tracking_uri)}: {len(a.usable)} used, "
        f"{len(a.left_out)} left out ({left}).",
        f"Model {', '.join(param_values(rows, 'model'))}; data {', '.join(param_values(rows, 'data'))}; "
        f"hardware {', '.join(param_values(rows, 'hardware'))}; training steps per run "
        f"{', '.join(param_values(rows, 'max_steps'))}. Written {a.today.isoformat()} from MLflow alone.",
    ]


def recommendation(a: Analysis) -> Section:
    rec = a.recommendation
    if rec is None:
        return Section(
            "Recommendation",
            [Lead("No recommendation: no run of this sweep finished with a quality and a cost.")],
        )
    g, best, run = rec.group, rec.best, rec.run
    lead = (
        f"Use {method_label(g.method)} ({g.knobs}): quality {fmt_quality(g.quality)} at {fmt_usd(g.cost_usd)} per run, "
        f"the cheapest configuration within {rec.tolerance:.3f} of the best quality in the sweep."
    )
    spread = seed_spread(a.groups)
    if spread is None:
        tolerance_text = (
            f"Tolerance {rec.tolerance:.3f}: no configuration ran with more than one seed, "
            "so there is no seed spread to set it by"
        )
    else:
        tolerance_text = (
            f"Tolerance {rec.tolerance:.3f} = the larger of {MIN_TOLERANCE} "
            f"and the widest seed spread, {spread:.3f}"
        )
    evidence = [
        f"Recommended run: {run.name} (run id {run.run_id}), quality {fmt_quality(run.quality)}; "
        f"{plural(g.n, 'seed')} of this configuration, mean {fmt_quality(g.quality)}, "
        f"range {fmt_quality(min(g.qualities))} to {fmt_quality(max(g.qualities))}.",
        f"Best quality in the sweep: {method_label(best.method)} ({best.knobs}), mean {fmt_quality(best.quality)} "
        f"at {fmt_usd(best.cost_usd)} per run.",
        f"{tolerance_text}; {plural(len(rec.contenders), 'configuration')} within it.",
    ]
    if best is not g and g.cost_usd > 0:
        factor = best.cost_usd / g.cost_usd
        evidence.append(
            f"The best-quality configuration costs {fmt_ratio(factor)} as much per run: the same budget buys "
            f"{fmt_ratio(factor)} as many experiments with the recommended one."
        )
    evidence += percent_evidence(a) + epd_evidence(a)
    return Section("Recommendation", [Lead(lead), "Evidence:", Bullets(evidence)])


# --- what this sweep cannot tell -------------------------------------------------------------


def _model_size(name: str) -> int | None:
    """The parameter count conf/model/NAME records, if it is a model option."""
    if name not in group_options("model"):
        return None
    return (compose_group("model", name).get("architecture") or {}).get("num_params")


def _params_text(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e7 else f"{count / 1e6:.1f}M"


def _noise_limits(a: Analysis) -> list[str]:
    """How far seeds and equal scores let the sweep tell configurations apart."""
    items = []
    if a.groups:
        most = max(g.n for g in a.groups)
        tol = a.recommendation.tolerance if a.recommendation else MIN_TOLERANCE
        if most == 1:
            items.append(
                f"Each configuration ran with one seed: a real difference cannot be told from seed noise, "
                f"so quality differences under {tol:.3f} are treated as ties."
            )
        else:
            items.append(
                f"At most {most} seeds per configuration (widest spread {seed_spread(a.groups):.3f}): "
                "more seeds would narrow the tolerance."
            )
    if len(a.usable) > 1 and not quality_varies(a.usable):
        items.append(
            f"Every run scored the same quality ({fmt_quality(a.usable[0].quality)}): the sweep cannot rank the "
            "methods on quality, so the recommendation follows cost alone."
        )
    return items


def _setting_limits(a: Analysis) -> list[str]:
    """The model, data and devices the measurements hold for."""
    rows = a.usable or a.rows
    items = []
    for name in param_values(rows, "model"):
        size = _model_size(name)
        size_text = f" ({_params_text(size)} parameters)" if size else ""
        items.append(
            f"Model {name}{size_text}: the guide speaks of 7B models; whether these ratios hold at that size is not measured here."
        )
    items.append(
        f"One data set ({', '.join(param_values(rows, 'data'))}): other tasks, such as knowledge injection, may rank the methods differently."
    )
    if any(hw.device == "cpu" for hw in a.hardware.values()):
        projected = (
            f"the {a.target.name} figures are projections by peak TFLOP/s"
            if a.target
            else "pass target=NAME to project them"
        )
        items.append(
            f"Runs were measured on a CPU: no GPU time or memory was measured; {projected}."
        )
    elif a.target:
        items.append(
            f"The {a.target.name} figures are projections by peak TFLOP/s, not measurements."
        )
    return items


def _coverage_limits(a: Analysis) -> list[str]:
    """Methods, ranks and training lengths the sweep did not cover, and what its costs include."""
    present = {r.method for r in a.usable}
    items = [
        f"No {method.label} run finished: its column is empty and claims about it are untested."
        for method in all_methods()
        if method.name not in present
    ]
    ranks = sorted({r.lora_r for r in a.usable if r.lora_r})
    if ranks and max(ranks) < 32:
        items.append(
            f"LoRA ranks tried: {', '.join(map(str, ranks))}; the guide's r=32-64 for knowledge-heavy tasks is untested."
        )
    items.append(
        f"Training length: {', '.join(param_values(a.usable or a.rows, 'max_steps'))} steps per run; "
        "longer training may narrow or widen the gaps."
    )
    items.append(
        "Cost counts each run's whole wall time, start-up and evaluation included, which weighs most on short runs "
        "(DeepSpeed's start-up on full fine-tuning)."
    )
    if a.left_out:
        items.append(
            f"{plural(len(a.left_out), 'run')} left out (failed, stopped early or unfinished) are counted but not used."
        )
    return items


def limits(a: Analysis) -> Section:
    items = _noise_limits(a) + _setting_limits(a) + _coverage_limits(a)
    return Section("What this sweep cannot tell", [Bullets(items)])


# --- the document ----------------------------------------------------------------------------


def build_document(a: Analysis, figures: dict[str, str]) -> Document:
    """The whole report; `figures` maps plot names to their paths relative to the report."""
    sections = [
        recommendation(a),
        limits(a),
        claims_section(a),
        quality_vs_cost(a, figures),
        versus_full(a, figures),
        lift_and_forgetting(a),
        cost_table(a, figures),
        *knobs(a, figures),
        all_runs(a),
        left_out(a),
    ]
    return Document(f"Experiments per dollar: sweep {a.experiment}", intro(a), sections)
