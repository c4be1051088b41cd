"""The report's sections on cost: the vendor guide's cost table re-measured (and projected to a
target GPU), and the experiments-per-dollar evidence behind the recommendation."""

from __future__ import annotations

from ftsweep.config.sources import group_options
from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.costs import PRICE_MAX_AGE_DAYS, MethodCost, effective_tflops, gain_over_full
from ftsweep.report.guide import GUIDE
from ftsweep.report.methods import is_full
from ftsweep.report.render import (
    Block,
    Bullets,
    Section,
    Table,
    fmt_count,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    fmt_usd,
)
from ftsweep.report.sections_common import figure_blocks, param_values


def _epd_sentence(costs: list[MethodCost], where: str) -> str:
    parts = []
    for c in costs:
        guide = GUIDE.get(c.method, {}).get("epd")
        guide_text = f" (guide {guide[0]}-{guide[1]})" if guide else ""
        parts.append(f"{method_label(c.method)} {fmt_count(c.experiments_per_dollar)}{guide_text}")
    sentence = f"Experiments per dollar {where}: " + ", ".join(parts) + "."
    gains = gain_over_full(costs)
    lora_gains = [f"{method_label(m)} {fmt_ratio(x)}" for m, x in gains.items() if not is_full(m)]
    if lora_gains:
        sentence += (
            f" Against full fine-tuning: {', '.join(lora_gains)} as many (the guide: 5-20x)."
        )
    return sentence


def epd_evidence(a: Analysis) -> list[str]:
    """Experiments per dollar by method, measured and projected, against the guide's."""
    if not a.costs:
        return []
    hardware = ", ".join(param_values(a.usable, "hardware"))
    out = [_epd_sentence(a.costs, f"as measured on {hardware}")]
    if a.projected:
        out.append(_epd_sentence(a.projected, f"projected to {a.target.name}"))
    out.append(
        "Absolute numbers depend on the model's size and the device; the ratios between methods are what compares with the guide."
    )
    return out


def _cost_table(costs: list[MethodCost], basis: str) -> Table:
    """The guide's rows for each method; `basis` ("measured" or "projected") labels the time,
    cost and experiments-per-dollar figures (storage is always measured: it is a file size)."""
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
            f"Training time per run ({basis})",
            *(cell(c.method, fmt_seconds(c.wall_time_s), "hours") for c in costs),
        ],
        [f"Cost per run ({basis})", *(cell(c.method, fmt_usd(c.cost_usd), "cost") for c in costs)],
        [
            "Storage per model (measured)",
            *(cell(c.method, fmt_mb(c.storage_mb), "storage") for c in costs),
        ],
        [
            f"Experiments per dollar ({basis})",
            *(cell(c.method, fmt_count(c.experiments_per_dollar), "epd") for c in costs),
        ],
    ]
    if gains:
        rows.append(
            [
                f"Experiments per dollar against full ({basis})",
                *(fmt_ratio(gains[m]) + ("" if is_full(m) else " (guide: 5-20x)") for m in methods),
            ]
        )
    rows.append(["Runs averaged", *(str(c.runs) for c in costs)])
    return Table(["Factor", *(method_label(m) for m in methods)], rows)


def _projection_text(a: Analysis) -> str:
    t = a.target
    measured = [a.hardware[n] for n in param_values(a.usable, "hardware") if n in a.hardware]
    rates = "; ".join(
        f"{hw.name} {hw.peak_tflops:g} x {hw.mfu:g} = {effective_tflops(hw):g}" for hw in measured
    )
    return (
        f"Projected to {t.name} (${t.price_per_device_hour:g}/device-hour, price from {t.price_date}): each "
        "method on its own cheapest layout there by the plan (`ftsweep plan`: full fine-tuning on as many "
        "GPUs as it needs, LoRA and QLoRA on one), each run's measured training tokens at the plan's speed "
        "for that layout (compute, ZeRO's collectives and the optimizer step; calibrated where runs of the "
        "method ran on that kind of device), and what the run spent besides training (start-up, evaluation) "
        f"scaled by effective TFLOP/s, peak x the share of it a step reaches: {rates}; {t.name} "
        f"{t.peak_tflops:g} x {t.mfu:g} = {effective_tflops(t):g}. Small models rarely reach a big GPU's "
        "usual share of peak: read an uncalibrated projection as a lower bound on time and cost."
    )


def cost_table(a: Analysis, figures: dict[str, str]) -> Section:
    title = "The guide's cost table, re-measured"
    if not a.costs:
        return Section(title, ["No finished runs: nothing to measure."])
    used = param_values(a.usable, "hardware")
    blocks: list[Block] = [
        f"Measured on {', '.join(used)}: means over each method's finished runs. Time is the whole run's wall time; "
        "cost is devices x hours x price per device-hour; storage is what the run saves (the adapter for LoRA-type "
        "methods, the whole model for full). The guide's figures are for a 7B model on 5K examples.",
        _cost_table(a.costs, "measured"),
    ]
    if a.target and a.projected:
        blocks += [_projection_text(a), _cost_table(a.projected, "projected")]
    elif not a.target:
        others = [n for n in group_options("hardware") if n not in used]
        blocks.append(
            f"No target GPU chosen: pass target=NAME to project these figures ({', '.join(others) or 'none in conf/hardware'})."
        )
    blocks += a.projection_notes
    if a.price_warnings:
        blocks += [f"Prices older than {PRICE_MAX_AGE_DAYS} days:", Bullets(a.price_warnings)]
    blocks += figure_blocks(figures, "experiments_per_dollar")
    return Section(title, blocks)


def spend_section(a: Analysis) -> Section:
    """What the sweep spent on these inputs: a line per kind of run, adding up to the total."""
    title = "What the sweep spent"
    spend = a.spend
    if spend is None or not spend.total_usd:
        return Section(title, ["No run recorded a cost."])
    total = spend.total_usd
    rows = [
        [
            line.kind,
            str(line.runs),
            fmt_seconds(line.wall_time_s),
            fmt_usd(line.cost_usd),
            f"{line.cost_usd / total:.0%}",
        ]
        for line in spend.lines
        if line.runs
    ]
    rows.append(["total", "", fmt_seconds(spend.total_wall_time_s), fmt_usd(total), "100%"])
    blocks: list[Block] = [
        "Every run that used compute, measured on the hardware it ran on: trials that completed, "
        "stopped early or failed, the untrained base model's scoring, and the attempts lost when a "
        "trial broke off and resumed (part of that trial's cost, shown apart).",
        Table(["Runs", "Count", "Wall time", "Cost (measured)", "Share"], rows),
    ]
    if spend.running:
        names = ", ".join(r.name for r in spend.running[:5])
        blocks.append(f"{len(spend.running)} run(s) still running, not counted yet: {names}.")
    if spend.unpriced:
        names = ", ".join(r.name for r in spend.unpriced[:5])
        blocks.append(
            f"{len(spend.unpriced)} run(s) recorded no cost and are not counted: {names}."
        )
    return Section(title, blocks)
