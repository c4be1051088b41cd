"""The report's plots: PNG files drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each plot is drawn only when the sweep has something to show in it: a knob tried at one value
makes no curve. Every method keeps its colour across plots.
"""

from __future__ import annotations

import math
from pathlib import Path

from ftsweep.report.analysis import (
    GUIDE,
    GUIDE_PERCENT_OF_FULL,
    Analysis,
    Effect,
    distinct_values,
    method_label,
)

METHOD_COLOURS = {"full": "#3b6fb6", "lora": "#e07b39", "qlora": "#3a9e5c"}
OTHER_COLOUR = "#777777"
QUALITY_LABEL = "quality (task score, 0 to 1; higher is better)"


def colour(method: str) -> str:
    return METHOD_COLOURS.get(method, OTHER_COLOUR)


def _figure(width: float = 7.5, height: float = 4.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


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

    fig, ax = _figure()
    costs = [r.cost_usd for r in analysis.usable]
    for method in dict.fromkeys(r.method for r in analysis.usable):
        runs = [r for r in analysis.usable if r.method == method]
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
    if analysis.recommendation:
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
    _quality_axis(ax, analysis)
    ax.xaxis.set_major_formatter(FuncFormatter(_dollars))
    ax.set_xlabel("cost per run (US$, measured device time x price)")
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality against cost, one point per run")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def experiments_per_dollar(analysis: Analysis, path: Path) -> Path:
    from matplotlib.patches import Patch

    from ftsweep.report.render import fmt_count

    fig, ax = _figure()
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
    return _save(fig, path)


def _short_config(group) -> str:
    row = group.first
    lr = f"lr {row.learning_rate:.0e}" if row.learning_rate is not None else ""
    seeds = f"{group.n} seed{'s' * (group.n > 1)}"
    return f"{method_label(row.method)} r={row.lora_r} alpha/r={row.alpha_ratio:g}\n{row.targets}, {lr}, {seeds}"


def percent_of_full(analysis: Analysis, path: Path) -> Path:
    percents = analysis.percents or []
    fig, ax = _figure(width=8.5, height=max(3.0, 0.62 * len(percents) + 1.9))
    ys = list(range(len(percents)))
    low, high = GUIDE_PERCENT_OF_FULL
    ax.axvspan(low, high, color="#f2d16b", alpha=0.45, label="the guide's 95-99%")
    ax.axvline(100, color=colour("full"), linestyle="--", label="best full fine-tuning run = 100%")
    for y, p in zip(ys, percents, strict=True):
        ax.errorbar(
            [p.mean],
            [y],
            xerr=[[p.mean - p.low], [p.high - p.mean]],
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
    lowest = min([low, *(p.low for p in percents)])
    highest = max([100.0, *(p.high for p in percents)])
    ax.set_xlim(lowest - 3, highest + 2)
    ax.set_xlabel("quality as % of the best full fine-tuning run (points: mean; bars: seed range)")
    ax.set_title("LoRA and QLoRA against full fine-tuning")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8.5, frameon=False)
    return _save(fig, path)


def _quality_axis(ax, analysis: Analysis) -> None:
    qualities = [r.quality for r in analysis.usable]
    if max(qualities) - min(qualities) < 0.01:
        ax.set_ylim(-0.05, 1.05)  # no spread to zoom into: show the whole scale


def _effect_lines(ax, effects: list[Effect]) -> None:
    for method in dict.fromkeys(e.method for e in effects):
        mine = [e for e in effects if e.method == method]
        xs = [e.value for e in mine]
        ys = [e.quality for e in mine]
        errors = [[e.quality - e.low for e in mine], [e.high - e.quality for e in mine]]
        ax.errorbar(
            xs,
            ys,
            yerr=errors,
            marker="o",
            capsize=4,
            color=colour(method),
            label=method_label(method),
        )
    ax.margins(x=0.08)  # points at the ends of the range stay clear of the frame


def quality_vs_rank(analysis: Analysis, path: Path) -> Path:
    from matplotlib.ticker import FixedLocator, ScalarFormatter

    effects = analysis.effects["rank"]
    fig, ax = _figure()
    _effect_lines(ax, effects)
    full = [r.quality for r in analysis.usable if r.method == "full"]
    if full:
        ax.axhline(
            max(full), color=colour("full"), linestyle="--", label="best full fine-tuning run"
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted({e.value for e in effects})))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("LoRA rank r (log scale)")
    _quality_axis(ax, analysis)
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality against LoRA rank (mean over runs; bars: min to max)")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def learning_rate(analysis: Analysis, path: Path) -> Path:
    fig, ax = _figure()
    _effect_lines(ax, analysis.effects["learning_rate"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    _quality_axis(ax, analysis)
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality against learning rate, per method")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def alpha_ratio(analysis: Analysis, path: Path) -> Path:
    fig, ax = _figure()
    _effect_lines(ax, analysis.effects["alpha_ratio"])
    ax.axvline(2, color="#888888", linestyle=":", label="the guide's alpha = 2 x rank")
    ax.set_xlabel("alpha / rank (LoRA scale)")
    _quality_axis(ax, analysis)
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality against the alpha/rank ratio")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def targets(analysis: Analysis, path: Path) -> Path:
    effects = analysis.effects["targets"]
    names = sorted({str(e.value) for e in effects})
    methods = list(dict.fromkeys(e.method for e in effects))
    step = 0.25 if len(methods) > 1 else 0.0
    fig, ax = _figure()
    for i, method in enumerate(methods):
        mine = [e for e in effects if e.method == method]
        offset = (i - (len(methods) - 1) / 2) * step
        xs = [names.index(str(e.value)) + offset for e in mine]
        ys = [e.quality for e in mine]
        errors = [[e.quality - e.low for e in mine], [e.high - e.quality for e in mine]]
        ax.errorbar(
            xs,
            ys,
            yerr=errors,
            fmt="o",
            markersize=8,
            capsize=5,
            color=colour(method),
            label=method_label(method),
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    _quality_axis(ax, analysis)
    ax.set_xlabel("target modules")
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality by LoRA target modules (mean over runs; bars: min to max)")
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


DRAWERS = {
    "quality_vs_cost": quality_vs_cost,
    "experiments_per_dollar": experiments_per_dollar,
    "percent_of_full": percent_of_full,
    "quality_vs_rank": quality_vs_rank,
    "learning_rate": learning_rate,
    "alpha_ratio": alpha_ratio,
    "targets": targets,
}


def plots_to_draw(analysis: Analysis) -> list[str]:
    """The plots this sweep has data for."""
    if not analysis.usable:
        return []
    names = ["quality_vs_cost", "experiments_per_dollar"]
    if analysis.percents:
        names.append("percent_of_full")
    for name, knob in (
        ("quality_vs_rank", "rank"),
        ("learning_rate", "learning_rate"),
        ("alpha_ratio", "alpha_ratio"),
        ("targets", "targets"),
    ):
        if distinct_values(analysis.effects[knob]) > 1:
            names.append(name)
    return names


def draw_all(analysis: Analysis, plot_dir: Path) -> dict[str, Path]:
    """Draw every plot the sweep has data for into plot_dir; returns name -> PNG path."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name in DRAWERS:
        # A plot from an earlier report that has no data now must not linger beside this one.
        (plot_dir / f"{name}.png").unlink(missing_ok=True)
    return {
        name: DRAWERS[name](analysis, plot_dir / f"{name}.png") for name in plots_to_draw(analysis)
    }
