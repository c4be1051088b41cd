"""The plots that set the methods against each other: quality against cost with the Pareto
front, experiments per dollar beside the guide's ranges, and LoRA-type quality as a percentage of
full fine-tuning's."""

from __future__ import annotations

import math
from pathlib import Path

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, best_full_run
from ftsweep.report.guide import GUIDE, GUIDE_PERCENT_OF_FULL
from ftsweep.report.plots_common import QUALITY_LABEL, colour, new_figure, quality_axis, save
from ftsweep.report.render import fmt_count


def _dollars(value: float, _pos=None) -> str:
    if value <= 0:
        return "$0"
    decimals = max(0, -math.floor(math.log10(value)) + 1)
    return f"${value:.{decimals}f}"


def _wide_range(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(values) / min(values) > 20


def quality_vs_cost(analysis: Analysis, path: Path) -> Path:
    from matplotlib.ticker import FuncFormatter

    fig, ax = new_figure()
    costs = [r.cost_usd for r in analysis.usable]
    for method in dict.fromkeys(r.method for r in analysis.usable):
        runs = [r for r in analysis.usable if r.method == method]
        with_ci = [(r, r.logged_interval()) for r in runs if r.logged_interval()]
        if with_ci:  # each run's 95% interval over its examples
            ax.errorbar(
                [r.cost_usd for r, _ in with_ci],
                [r.quality for r, _ in with_ci],
                yerr=[
                    [max(0.0, r.quality - lo) for r, (lo, _) in with_ci],
                    [max(0.0, hi - r.quality) for r, (_, hi) in with_ci],
                ],
                fmt="none",
                ecolor=colour(method),
                alpha=0.45,
                capsize=3,
                zorder=2,
            )
        ax.scatter(
            [r.cost_usd for r in runs],
            [r.quality for r in runs],
            s=46,
            color=colour(method),
            label=method_label(method),
            zorder=3,
        )
    front = analysis.front
    ax.plot(
        [r.cost_usd for r in front],
        [r.quality for r in front],
        drawstyle="steps-post",
        color="#222222",
        linewidth=1.2,
        linestyle="--",
        label="Pareto front (no run is cheaper and better)",
        zorder=2,
    )
    if analysis.recommendation and analysis.recommendation.run:
        pick = analysis.recommendation.run
        ax.scatter(
            [pick.cost_usd],
            [pick.quality],
            s=220,
            facecolors="none",
            edgecolors="#c0392b",
            linewidths=2,
            zorder=4,
        )
        ax.annotate(
            "recommended",
            (pick.cost_usd, pick.quality),
            textcoords="offset points",
            xytext=(10, -16),
            color="#c0392b",
        )
    if _wide_range(costs):
        ax.set_xscale("log")
    quality_axis(ax, analysis)
    ax.xaxis.set_major_formatter(FuncFormatter(_dollars))
    ax.set_xlabel("cost per run (US$, measured device time x price)")
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality against cost, one point per run")
    ax.legend(loc="best", fontsize=9)
    return save(fig, path)


def experiments_per_dollar(analysis: Analysis, path: Path) -> Path:
    from matplotlib.patches import Patch

    fig, ax = new_figure()
    methods = [c.method for c in analysis.costs]
    series = [("measured", analysis.costs, 1.0)]
    if analysis.target and analysis.projected:
        series.append((f"projected to {analysis.target.name}", analysis.projected, 0.45))
    width = 0.8 / (len(series) + 1)
    handles = []
    values = []
    for i, (name, costs, alpha) in enumerate(series):
        by_method = {c.method: c for c in costs}
        shown = [m for m in methods if m in by_method]
        xs = [methods.index(m) + i * width for m in shown]
        ys = [by_method[m].experiments_per_dollar for m in shown]
        bars = ax.bar(
            xs, ys, width=width, color=[colour(m) for m in shown], alpha=alpha, edgecolor="#333333"
        )
        ax.bar_label(
            bars, labels=[fmt_count(y) for y in ys], fontsize=8, padding=2, color="#222222"
        )
        handles.append(Patch(facecolor="#888888", alpha=alpha, edgecolor="#333333", label=name))
        values += ys
    guide_style = {"facecolor": "#dddddd", "hatch": "//", "edgecolor": "#555555"}
    for m, method in enumerate(methods):
        if method in GUIDE:
            low, high = GUIDE[method]["epd"]
            ax.bar(
                [m + len(series) * width], [high - low], bottom=[low], width=width, **guide_style
            )
            values += [low, high]
    handles.append(Patch(**guide_style, label="the guide's range (7B model on A100/T4)"))
    ax.set_yscale("log")
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if positive:
        ax.set_ylim(min(positive) / 3, max(positive) * 5)
    ax.set_xticks(
        [m + (len(series) * width) / 2 for m in range(len(methods))],
        [method_label(m) for m in methods],
    )
    ax.set_ylabel("experiments per dollar (runs per US$, log scale)")
    ax.set_title("Experiments per dollar by method")
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=len(handles),
        fontsize=8.5,
        frameon=False,
    )
    return save(fig, path)


def _bar(length: float) -> float:
    # An unknown (NaN) or unbounded end draws no bar rather than breaking the plot.
    return length if math.isfinite(length) and length > 0 else 0.0


def _short_config(group) -> str:
    row = group.first
    lr = f"lr {row.learning_rate:.0e}" if row.learning_rate is not None else ""
    seeds = f"{group.n} seed{'s' * (group.n > 1)}"
    return f"{method_label(row.method)} r={row.lora_r} alpha/r={row.alpha_ratio:g}\n{row.targets}, {lr}, {seeds}"


def percent_of_full(analysis: Analysis, path: Path) -> Path:
    percents = analysis.percents or []
    fig, ax = new_figure(width=8.5, height=max(3.0, 0.62 * len(percents) + 1.9))
    ys = list(range(len(percents)))
    low, high = GUIDE_PERCENT_OF_FULL
    ax.axvspan(low, high, color="#f2d16b", alpha=0.45, label="the guide's 95-99%")
    full = best_full_run(analysis.usable)
    ax.axvline(
        100,
        color=colour(full.method),
        linestyle="--",
        label="best full fine-tuning configuration = 100%",
    )
    for y, p in zip(ys, percents, strict=True):
        ax.errorbar(
            [p.mean],
            [y],
            xerr=[[_bar(p.mean - p.low)], [_bar(p.high - p.mean)]],
            fmt="o",
            markersize=8,
            capsize=5,
            color=colour(p.group.method),
        )
        ax.annotate(
            f"{p.mean:.1f}%",
            (p.mean, y),
            textcoords="offset points",
            xytext=(0, 9),
            ha="center",
            fontsize=8,
        )
    ax.set_yticks(ys, [_short_config(p.group) for p in percents], fontsize=8.5)
    ax.set_ylim(len(percents) - 0.5, -0.7)  # first configuration on top
    lowest = min([low, *(p.low for p in percents if math.isfinite(p.low))])
    highest = max([100.0, *(p.high for p in percents if math.isfinite(p.high))])
    ax.set_xlim(lowest - 3, highest + 2)
    ax.set_xlabel(
        "quality as % of the best full fine-tuning configuration (points: estimate; bars: 95% interval)"
    )
    ax.set_title("LoRA and QLoRA against full fine-tuning")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8.5, frameon=False)
    return save(fig, path)
