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
from ftsweep.report.evidence import ConfigGroup, Estimate
from ftsweep.report.inputs import inputs_sentence
from ftsweep.report.recommendation import Recommendation
from ftsweep.report.render import (
    Bullets,
    Document,
    Lead,
    Section,
    fmt_diff,
    fmt_estimate,
    fmt_quality,
    fmt_ratio,
    fmt_usd,
)
from ftsweep.report.sections_common import param_values, plural
from ftsweep.report.sections_cost import cost_table, epd_evidence, spend_section
from ftsweep.report.sections_knobs import knobs
from ftsweep.report.sections_quality import (
    lift_and_forgetting,
    percent_evidence,
    quality_vs_cost,
    versus_full,
)
from ftsweep.report.sections_runs import all_runs, left_out
from ftsweep.report.sections_variants import variants
from ftsweep.tracking.redact import redact_uri


def intro(a: Analysis) -> list[str]:
    counts: dict[str | None, int] = {}
    for row in a.left_out:
        counts[row.left_out_reason] = counts.get(row.left_out_reason, 0) + 1
    left = "; ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"
    rows = a.usable or a.rows
    out = [
        f"{plural(len(a.rows), 'run')} recorded in {redact_uri(a.tracking_uri)}: {len(a.usable)} used, "
        f"{len(a.left_out)} left out ({left}).",
        f"Model {', '.join(param_values(rows, 'model'))}; data {', '.join(param_values(rows, 'data'))}; "
        f"hardware {', '.join(param_values(rows, 'hardware'))}; training steps per run "
        f"{', '.join(param_values(rows, 'max_steps'))}. Written {a.today.isoformat()} from MLflow alone.",
    ]
    if a.inputs is not None:
        out.append(f"All runs here share their {inputs_sentence(a.inputs)}")
    if a.inputs_groups > 1:
        out.append(
            f"The sweep's runs were trained and scored on {a.inputs_groups} different inputs, which are "
            "never compared: this report covers the runs on these inputs only (the index, ../report.md, lists the others)."
        )
    return out


def est(e: Estimate) -> str:
    return fmt_estimate(e.value, e.low, e.high)


def _test_text(a: Analysis, group: ConfigGroup) -> str:
    t = a.evidence.test_quality(group)
    if t.interval is None and t.value != t.value:  # NaN: no test split recorded
        return "no test quality recorded (a run from before the test split)"
    n = f" over {t.examples} test examples" if t.examples else ""
    return f"test quality {est(t)}{n}"


def _no_recommendation(a: Analysis, rec: Recommendation) -> Section:
    base = ConfigGroup([rec.baseline])
    best = rec.best
    lift = rec.lifts[best.ids]
    lead = (
        f"No recommendation: {rec.why_none}. The untrained base model scores "
        f"{est(a.evidence.quality(base))}; the best configuration, {method_label(best.method)} ({best.knobs}), "
        f"{est(rec.estimate(best))}: {fmt_diff(lift.value, lift.low, lift.high)} over it ({lift.how})."
    )
    items = [
        f"{method_label(g.method)} ({g.knobs}): {est(rec.estimate(g))}, minus the base model "
        f"{fmt_diff(rec.lifts[g.ids].value, rec.lifts[g.ids].low, rec.lifts[g.ids].high)}"
        for g in sorted(rec.groups, key=lambda g: -rec.estimate(g).value)[:8]
    ]
    items.append(
        "Nothing is merged by default: `ftsweep merge` asks for run=ID. Train longer, raise the learning rate, "
        "or check that the task's replies fit train.seq_len and train.max_new_tokens."
    )
    return Section("Recommendation", [Lead(lead), "Evidence:", Bullets(items)])


def recommendation(a: Analysis) -> Section:
    rec = a.recommendation
    if rec is None:
        return Section(
            "Recommendation",
            [Lead("No recommendation: no run of this sweep finished with a quality and a cost.")],
        )
    if rec.group is None:
        return _no_recommendation(a, rec)
    g, best, run = rec.group, rec.best, rec.run
    e = rec.estimate(g)
    cost = rec.costs[g.ids]
    if g.ids == best.ids and len(rec.contenders) == 1:
        why = "It has the best quality, and every other configuration is significantly below it."
    elif g.ids == best.ids:
        why = (
            f"It has the best quality estimate; of the {len(rec.contenders)} configurations not "
            f"significantly below it, it is {rec.choice_short}."
        )
    else:
        d = rec.versus_best[g.ids]
        why = (
            f"It is not significantly below the best (best minus it: {fmt_diff(d.value, d.low, d.high)}, "
            f"{d.how}); of the {len(rec.contenders)} configurations that are not, it is {rec.choice_short}."
        )
    lead = (
        f"Use {method_label(g.method)} ({g.knobs}): quality {est(e)} on the validation split, "
        f"{_test_text(a, ConfigGroup([run]))}, at {fmt_usd(cost)} per run ({rec.cost_basis}). {why}"
    )
    evidence: list[str] = [
        f"Recommended run: {run.name} (run id {run.run_id}), "
        f"{'its best seed by ' if g.n > 1 else ''}validation quality "
        f"{est(a.evidence.quality(ConfigGroup([run])))}; {_test_text(a, ConfigGroup([run]))}. "
        "The test split was never used to choose."
    ]
    if g.n > 1:
        how = "examples and seeds resampled" if e.source == "per-example scores" else e.source
        evidence.append(
            f"{plural(g.n, 'seed')} of this configuration pooled ({how}): {est(e)}; {_test_text(a, g)}."
        )
    evidence.append(
        f"Best quality in the sweep: {method_label(best.method)} ({best.knobs}), {est(rec.estimate(best))} "
        f"at {fmt_usd(rec.costs[best.ids])} per run."
    )
    if len(rec.contenders) > 1:
        evidence.append(
            f"{plural(len(rec.contenders), 'configuration')} not significantly below the best: "
            + "; ".join(
                f"{method_label(c.method)} ({c.knobs}) {est(rec.estimate(c))} at {fmt_usd(rec.costs[c.ids])}"
                for c in rec.contenders
            )
            + "."
        )
    if rec.by_plan:
        costs_text = (
            f"The costs per run above are {rec.cost_basis}, with no GPU run to calibrate the "
            "plan's speed: they did not decide."
        )
    else:
        costs_text = (
            f"Costs are per run {rec.cost_basis}; a cost difference counts only beyond the run-to-run "
            f"spread of wall time: {rec.noise.text()}."
        )
    evidence.append(f"Choice among them: {rec.tie_break}. {costs_text}")
    if best.ids != g.ids and cost > 0 and rec.costs[best.ids] > cost:
        factor = rec.costs[best.ids] / cost
        evidence.append(
            f"The best-quality configuration costs {fmt_ratio(factor)} as much per run: the same budget buys "
            f"{fmt_ratio(factor)} as many experiments with the recommended one."
        )
    if rec.baseline is not None:
        lift = rec.lifts[g.ids]
        evidence.append(
            f"Against the untrained base model ({est(a.evidence.quality(ConfigGroup([rec.baseline])))}): "
            f"{fmt_diff(lift.value, lift.low, lift.high)} ({lift.how})."
        )
    else:
        evidence.append(
            "The untrained base model was not measured (sweep.baseline=false): whether fine-tuning helped at all is not checked."
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
    """How far examples, seeds and equal scores let the sweep tell configurations apart."""
    items = []
    counts = sorted({n for r in a.usable if (n := r.num_examples)})
    if counts:
        n = counts[0]
        items.append(
            f"Quality is a mean over {', '.join(map(str, counts))} validation examples: one example moves it by "
            f"{1 / n:.3f} on a right/wrong task. Every quality here carries its 95% bootstrap interval, and a "
            "difference inside the noise is a tie, never a ranking."
        )
    if a.groups:
        most = max(g.n for g in a.groups)
        if most == 1:
            items.append(
                "Each configuration ran with one seed: the intervals cover the choice of examples, not what "
                "another seed would do (sweep.seeds=2 or more measures it)."
            )
        else:
            items.append(
                f"Up to {most} seeds per configuration, pooled by resampling examples and seeds: more seeds narrow "
                "the intervals."
            )
    if a.flat:
        items.append(
            f"Every run scored the same quality ({fmt_quality(a.usable[0].quality)}): the sweep cannot rank the "
            "configurations on quality, and the claims that compare quality are not testable."
        )
    missing = a.without_scores()
    if missing:
        names = ", ".join(r.name for r, _ in missing[:5]) + (", ..." if len(missing) > 5 else "")
        items.append(
            f"{plural(len(missing), 'run')} ({names}) {'has' if len(missing) == 1 else 'have'} no per-example "
            "scores (scores/scores.json; runs recorded before them): they are compared through the intervals "
            "they logged (unpaired, so wider), or by point estimates alone where they logged none."
        )
    if a.recommendation is not None:
        items.append(f"Run-to-run spread of wall time: {a.recommendation.noise.text()}.")
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
            f"the {a.target.name} figures are projections by the plan"
            if a.target
            else "pass target=NAME to project them"
        )
        items.append(
            f"Runs were measured on a CPU: no GPU time or memory was measured; {projected}."
        )
    elif a.target:
        items.append(f"The {a.target.name} figures are projections by the plan, not measurements.")
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
        lift_and_forgetting(a, figures),
        cost_table(a, figures),
        spend_section(a),
        *knobs(a, figures),
        *variants(a),
        all_runs(a),
        left_out(a),
    ]
    return Document(f"Experiments per dollar: sweep {a.experiment}", intro(a), sections)
