"""The report's wording: each section is a function from the analysis to blocks of plain text."""

from __future__ import annotations

import math
import statistics

from ftsweep.config import CONF_DIR
from ftsweep.report.analysis import (
    GUIDE,
    GUIDE_LR_RATIO,
    METHOD_ORDER,
    MIN_TOLERANCE,
    PRICE_MAX_AGE_DAYS,
    Analysis,
    Effect,
    MethodCost,
    RunRow,
    best_effect_per_method,
    best_percent_per_method,
    distinct_values,
    effective_tflops,
    gain_over_full,
    hardware_names,
    lift_over_base,
    load_hardware,
    method_label,
    percent_verdict,
    quality_varies,
    seed_spread,
)
from ftsweep.report.claims import claims_section
from ftsweep.report.render import (
    Block,
    Bullets,
    Document,
    Figure,
    Lead,
    Section,
    Table,
    fmt_count,
    fmt_mb,
    fmt_percent,
    fmt_quality,
    fmt_ratio,
    fmt_seconds,
    fmt_usd,
)
from ftsweep.tracking.record import redact_uri

CAPTIONS = {
    "quality_vs_cost": "Quality against cost per run. The dashed line is the Pareto front; the red circle is the recommended run.",
    "experiments_per_dollar": "Experiments per dollar by method (log scale), measured and projected, beside the guide's ranges.",
    "percent_of_full": "LoRA and QLoRA quality as a percentage of the best full fine-tuning run, against the guide's 95-99%.",
    "quality_vs_rank": "Quality against LoRA rank: mean over runs, bars from the worst to the best run.",
    "learning_rate": "Quality against learning rate for each method.",
    "alpha_ratio": "Quality against alpha/rank; the dotted line is the guide's alpha = 2 x rank.",
    "targets": "Quality by the modules LoRA adapts.",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _model_size(name: str) -> int | None:
    import yaml

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        return None
    arch = (yaml.safe_load(path.read_text()) or {}).get("architecture") or {}
    return arch.get("num_params")


def _params_text(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e7 else f"{count / 1e6:.1f}M"


def _values(rows: list[RunRow], key: str) -> list[str]:
    return sorted({r.params.get(key, "?") for r in rows})


def _figure(figures: dict[str, str], name: str) -> list[Block]:
    return [Figure(figures[name], CAPTIONS[name])] if name in figures else []


# --- the sections ----------------------------------------------------------------------------


def intro(a: Analysis) -> list[Block]:
    counts = {}
    for row in a.left_out:
        counts[row.left_out_reason] = counts.get(row.left_out_reason, 0) + 1
    left = "; ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"
    rows = a.usable or a.rows
    return [
        f"{_plural(len(a.rows), 'run')} recorded in {redact_uri(a.tracking_uri)}: {len(a.usable)} used, "
        f"{len(a.left_out)} left out ({left}).",
        f"Model {', '.join(_values(rows, 'model'))}; data {', '.join(_values(rows, 'data'))}; "
        f"hardware {', '.join(_values(rows, 'hardware'))}; training steps per run "
        f"{', '.join(_values(rows, 'max_steps'))}. Written {a.today.isoformat()} from MLflow alone.",
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
        f"{_plural(g.n, 'seed')} of this configuration, mean {fmt_quality(g.quality)}, "
        f"range {fmt_quality(min(g.qualities))} to {fmt_quality(max(g.qualities))}.",
        f"Best quality in the sweep: {method_label(best.method)} ({best.knobs}), mean {fmt_quality(best.quality)} "
        f"at {fmt_usd(best.cost_usd)} per run.",
        f"{tolerance_text}; {_plural(len(rec.contenders), 'configuration')} within it.",
    ]
    if best is not g and g.cost_usd > 0:
        factor = best.cost_usd / g.cost_usd
        evidence.append(
            f"The best-quality configuration costs {fmt_ratio(factor)} as much per run: the same budget buys "
            f"{fmt_ratio(factor)} as many experiments with the recommended one."
        )
    evidence += _percent_evidence(a) + _epd_evidence(a)
    return Section("Recommendation", [Lead(lead), "Evidence:", Bullets(evidence)])


def _percent_evidence(a: Analysis) -> list[str]:
    methods = {r.method for r in a.usable}
    if not methods & {"lora", "qlora"}:
        return ["No LoRA or QLoRA run finished: the guide's 95-99% claim is untested."]
    if "full" not in methods:
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


def _epd_sentence(costs: list[MethodCost], where: str) -> str:
    parts = []
    for c in costs:
        guide = GUIDE.get(c.method, {}).get("epd")
        guide_text = f" (guide {guide[0]}-{guide[1]})" if guide else ""
        parts.append(f"{method_label(c.method)} {fmt_count(c.experiments_per_dollar)}{guide_text}")
    sentence = f"Experiments per dollar {where}: " + ", ".join(parts) + "."
    gains = gain_over_full(costs)
    lora_gains = [f"{method_label(m)} {fmt_ratio(x)}" for m, x in gains.items() if m != "full"]
    if lora_gains:
        sentence += (
            f" Against full fine-tuning: {', '.join(lora_gains)} as many (the guide: 5-20x)."
        )
    return sentence


def _epd_evidence(a: Analysis) -> list[str]:
    if not a.costs:
        return []
    hardware = ", ".join(_values(a.usable, "hardware"))
    out = [_epd_sentence(a.costs, f"as measured on {hardware}")]
    if a.projected:
        out.append(_epd_sentence(a.projected, f"projected to {a.target.name}"))
    out.append(
        "Absolute numbers depend on the model's size and the device; the ratios between methods are what compares with the guide."
    )
    return out


def limits(a: Analysis) -> Section:
    items = []
    groups = a.groups
    if groups:
        most = max(g.n for g in groups)
        tol = a.recommendation.tolerance if a.recommendation else MIN_TOLERANCE
        if most == 1:
            items.append(
                f"Each configuration ran with one seed: a real difference cannot be told from seed noise, "
                f"so quality differences under {tol:.3f} are treated as ties."
            )
        else:
            items.append(
                f"At most {most} seeds per configuration (widest spread {seed_spread(groups):.3f}): "
                "more seeds would narrow the tolerance."
            )
    if len(a.usable) > 1 and not quality_varies(a.usable):
        items.append(
            f"Every run scored the same quality ({fmt_quality(a.usable[0].quality)}): the sweep cannot rank the "
            "methods on quality, so the recommendation follows cost alone."
        )
    for name in _values(a.usable or a.rows, "model"):
        size = _model_size(name)
        size_text = f" ({_params_text(size)} parameters)" if size else ""
        items.append(
            f"Model {name}{size_text}: the guide speaks of 7B models; whether these ratios hold at that size is not measured here."
        )
    items.append(
        f"One data set ({', '.join(_values(a.usable or a.rows, 'data'))}): other tasks, such as knowledge injection, may rank the methods differently."
    )
    cpu = [n for n in _values(a.usable, "hardware") if n == "cpu"]
    if cpu:
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
    present = {r.method for r in a.usable}
    for method in METHOD_ORDER:
        if method not in present:
            items.append(
                f"No {method_label(method)} run finished: its column is empty and claims about it are untested."
            )
    ranks = sorted({r.lora_r for r in a.usable if r.lora_r})
    if ranks and max(ranks) < 32:
        items.append(
            f"LoRA ranks tried: {', '.join(map(str, ranks))}; the guide's r=32-64 for knowledge-heavy tasks is untested."
        )
    items.append(
        f"Training length: {', '.join(_values(a.usable or a.rows, 'max_steps'))} steps per run; "
        "longer training may narrow or widen the gaps."
    )
    items.append(
        "Cost counts each run's whole wall time, start-up and evaluation included, which weighs most on short runs "
        "(DeepSpeed's start-up on full fine-tuning)."
    )
    if a.left_out:
        items.append(
            f"{_plural(len(a.left_out), 'run')} left out (failed, stopped early or unfinished) are counted but not used."
        )
    return Section("What this sweep cannot tell", [Bullets(items)])


# --- quality against cost and against full ---------------------------------------------------


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
            *_figure(figures, "quality_vs_cost"),
            "The Pareto front: runs that no other run beats on both cost and quality, cheapest first.",
            Table(["run", "method", "quality", "cost per run", "recommended"], rows),
        ],
    )


def versus_full(a: Analysis, figures: dict[str, str]) -> Section:
    title = "LoRA and QLoRA as a share of full fine-tuning"
    if a.percents is None:
        return Section(title, _percent_evidence(a))
    baseline = max((r for r in a.usable if r.method == "full"), key=lambda r: r.quality)
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
    return Section(
        title,
        [
            f"Baseline: the best full fine-tuning run, {baseline.name}, quality {fmt_quality(baseline.quality)}.",
            Table(
                [
                    "method",
                    "configuration",
                    "seeds",
                    "% of full (mean)",
                    "seed range",
                    "against the guide",
                ],
                rows,
            ),
            *_figure(figures, "percent_of_full"),
        ],
    )


# --- the cost table --------------------------------------------------------------------------


def _cost_table(costs: list[MethodCost]) -> Table:
    methods = [c.method for c in costs]
    gains = gain_over_full(costs)

    def cell(method: str, measured: str, key: str) -> str:
        guide = GUIDE.get(method, {}).get(key)
        if isinstance(guide, tuple):
            guide = f"{guide[0]}-{guide[1]}"
        return f"{measured} (guide: {guide})" if guide else measured

    rows = [
        ["Device", *(cell(c.method, c.devices, "device") for c in costs)],
        [
            "Training time per run",
            *(cell(c.method, fmt_seconds(c.wall_time_s), "hours") for c in costs),
        ],
        ["Cost per run", *(cell(c.method, fmt_usd(c.cost_usd), "cost") for c in costs)],
        ["Storage per model", *(cell(c.method, fmt_mb(c.storage_mb), "storage") for c in costs)],
        [
            "Experiments per dollar",
            *(cell(c.method, fmt_count(c.experiments_per_dollar), "epd") for c in costs),
        ],
    ]
    if gains:
        rows.append(
            [
                "Experiments per dollar against full",
                *(
                    fmt_ratio(gains[m]) + ("" if m == "full" else " (guide: 5-20x)")
                    for m in methods
                ),
            ]
        )
    rows.append(["Runs averaged", *(str(c.runs) for c in costs)])
    return Table(["Factor", *(method_label(m) for m in methods)], rows)


def _projection_text(a: Analysis) -> str:
    t = a.target
    measured = [hw for n in _values(a.usable, "hardware") if (hw := load_hardware(n))]
    rates = "; ".join(
        f"{hw.name} {hw.peak_tflops:g} x {hw.mfu:g} = {effective_tflops(hw):g}" for hw in measured
    )
    return (
        f"Projected to {t.name} (${t.price_per_device_hour:g}/device-hour, price from {t.price_date}): each run's "
        f"time x (measured device's TFLOP/s / {t.name}'s), where TFLOP/s = peak x the share of it a step reaches "
        f"(mfu in conf/hardware): {rates}; {t.name} {t.peak_tflops:g} x {t.mfu:g} = {effective_tflops(t):g}. "
        "Start-up and evaluation are scaled like training, and small models rarely reach a big GPU's usual "
        "share of peak: read these as a lower bound on time and cost."
    )


def cost_table(a: Analysis, figures: dict[str, str]) -> Section:
    title = "The guide's cost table, re-measured"
    if not a.costs:
        return Section(title, ["No finished runs: nothing to measure."])
    hardware = ", ".join(_values(a.usable, "hardware"))
    blocks: list[Block] = [
        f"Measured on {hardware}: means over each method's finished runs. Time is the whole run's wall time; "
        "cost is devices x hours x price per device-hour; storage is what the run saves (the adapter for LoRA-type "
        "methods, the whole model for full). The guide's figures are for a 7B model on 5K examples.",
        _cost_table(a.costs),
    ]
    if a.target and a.projected:
        blocks += [
            _projection_text(a),
            _cost_table(a.projected),
        ]
    elif not a.target:
        others = [n for n in hardware_names() if n not in _values(a.usable, "hardware")]
        blocks.append(
            f"No target GPU chosen: pass target=NAME to project these figures ({', '.join(others) or 'none in conf/hardware'})."
        )
    blocks += a.projection_notes
    if a.price_warnings:
        blocks += [f"Prices older than {PRICE_MAX_AGE_DAYS} days:", Bullets(a.price_warnings)]
    blocks += _figure(figures, "experiments_per_dollar")
    return Section(title, blocks)


# --- knobs -----------------------------------------------------------------------------------


def _effect_rows(effects: list[Effect], value_text) -> list[list[str]]:
    return [
        [
            method_label(e.method),
            value_text(e.value),
            str(len(e.rows)),
            fmt_quality(e.quality),
            f"{fmt_quality(e.low)} to {fmt_quality(e.high)}" if len(e.rows) > 1 else "",
            f"{statistics.fmean(r.metrics.get('trainable_params', math.nan) for r in e.rows):,.0f}",
        ]
        for e in effects
    ]


def _knob_section(
    a: Analysis,
    figures: dict[str, str],
    knob: str,
    title: str,
    header: str,
    value_text,
    one_value: str,
) -> Section | None:
    effects = a.effects[knob]
    if not effects:
        return None
    blocks: list[Block] = [
        Table(
            ["method", header, "runs", "mean quality", "range", "trainable params"],
            _effect_rows(effects, value_text),
        )
    ]
    if distinct_values(effects) < 2:
        blocks.append(one_value.format(value=value_text(effects[0].value)))
    best = best_effect_per_method(effects)
    if distinct_values(effects) > 1:
        blocks.append(
            "Best per method: "
            + "; ".join(
                f"{method_label(m)} {value_text(e.value)} (mean quality {fmt_quality(e.quality)})"
                for m, e in best.items()
            )
            + ". Other knobs vary between these runs too: read it as a pointer, not a controlled comparison."
        )
    blocks += _figure(figures, {"rank": "quality_vs_rank"}.get(knob, knob))
    return Section(title, blocks)


def knobs(a: Analysis, figures: dict[str, str]) -> list[Section]:
    sections = [
        _knob_section(
            a,
            figures,
            "rank",
            "Quality against rank",
            "rank r",
            str,
            "Only r={value} was tried: the sweep cannot tell how quality changes with rank.",
        ),
        _knob_section(
            a,
            figures,
            "learning_rate",
            "Best learning rate per method",
            "learning rate",
            lambda v: f"{v:.0e}",
            "Only lr={value} was tried: the sweep cannot tell which learning rate is best.",
        ),
        _knob_section(
            a,
            figures,
            "alpha_ratio",
            "Alpha/rank ratio",
            "alpha / r",
            lambda v: f"{v:g}",
            "Only alpha/r={value} was tried: the sweep cannot test the guide's alpha = 2 x rank.",
        ),
        _knob_section(
            a,
            figures,
            "targets",
            "Target modules",
            "targets",
            str,
            "Only targets={value} were tried: the sweep cannot tell attention-only from MLP or all linear layers.",
        ),
    ]
    lr = _lr_ratio_note(a)
    if lr and sections[1]:
        sections[1].blocks.insert(1, lr)
    return [s for s in sections if s is not None]


def _lr_ratio_note(a: Analysis) -> str | None:
    effects = a.effects["learning_rate"]
    best = best_effect_per_method(effects)
    if "full" not in best or not ({"lora", "qlora"} & set(best)):
        return None
    method = "lora" if "lora" in best else "qlora"
    ratio = best[method].value / best["full"].value
    guide = f"the guide: about {GUIDE_LR_RATIO:g}x; full 5e-6 to 1e-5, LoRA 1e-4 to 3e-4 at 7B"
    tried = [len({e.value for e in effects if e.method == m}) for m in ("full", method)]
    if min(tried) < 2 or not quality_varies(a.usable):
        return (
            f"The {method_label(method)} learning rate set here is {fmt_ratio(ratio)} the full fine-tuning one ({guide}); "
            "the sweep did not vary both enough to say which ratio is best."
        )
    return f"Best {method_label(method)} learning rate / best full learning rate = {fmt_ratio(ratio)} ({guide})."


# --- runs ------------------------------------------------------------------------------------


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


def all_runs(a: Analysis) -> Section:
    rows = [
        [
            r.name,
            r.run_id[:8],
            method_label(r.method),
            r.knobs,
            r.seed,
            fmt_quality(r.quality),
            fmt_quality(r.metrics.get("eval_loss", math.nan)),
            f"{r.metrics.get('forgetting', math.nan):+.3f}",
            fmt_seconds(r.wall_time_s),
            fmt_usd(r.cost_usd),
            fmt_mb(r.metrics.get("artifact_mb", math.nan)),
            f"{r.metrics.get('peak_mem_gb', math.nan):.2f}",
        ]
        for r in sorted(a.usable, key=lambda r: -r.quality)
    ]
    headers = [
        "run",
        "id",
        "method",
        "configuration",
        "seed",
        "quality",
        "eval loss",
        "forgetting",
        "wall time",
        "cost",
        "storage",
        "peak GB",
    ]
    return Section("All runs used", [Table(headers, rows)] if rows else ["None."])


def left_out(a: Analysis) -> Section:
    if not a.left_out:
        return Section("Runs left out", ["None: every run finished and was used."])
    rows = [
        [
            r.name,
            r.run_id[:8],
            method_label(r.method),
            r.knobs,
            r.seed,
            r.left_out_reason or "",
            r.error.splitlines()[0][:160] if r.error else "",
        ]
        for r in a.left_out
    ]
    return Section(
        "Runs left out",
        [
            f"{_plural(len(a.left_out), 'run')} failed, stopped early or did not finish: counted here, not used above.",
            Table(["run", "id", "method", "configuration", "seed", "why", "error"], rows),
        ],
    )


def build_document(a: Analysis, figures: dict[str, str]) -> Document:
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
