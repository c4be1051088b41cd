"""The plots of each knob's effect, per method: quality against LoRA rank, learning rate,
alpha/rank and target modules."""

from __future__ import annotations

from pathlib import Path

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, best_full_run
from ftsweep.report.plots_common import (
    QUALITY_LABEL,
    colour,
    effect_lines,
    error_bars,
    finish_quality_plot,
    new_figure,
    quality_axis,
    save,
)


def quality_vs_rank(analysis: Analysis, path: Path) -> Path:
    from matplotlib.ticker import FixedLocator, ScalarFormatter

    effects = analysis.effects["rank"]
    fig, ax = new_figure()
    effect_lines(ax, effects)
    full = best_full_run(analysis.usable)
    if full is not None:
        ax.axhline(
            full.quality,
            color=colour(full.method),
            linestyle="--",
            label="best full fine-tuning run",
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted({e.value for e in effects})))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("LoRA rank r (log scale)")
    return finish_quality_plot(
        fig,
        ax,
        analysis,
        "Quality against LoRA rank (best configuration per rank; bars: 95% interval)",
        path,
    )


def learning_rate(analysis: Analysis, path: Path) -> Path:
    fig, ax = new_figure()
    effect_lines(ax, analysis.effects["learning_rate"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    return finish_quality_plot(fig, ax, analysis, "Quality against learning rate, per method", path)


def alpha_ratio(analysis: Analysis, path: Path) -> Path:
    fig, ax = new_figure()
    effect_lines(ax, analysis.effects["alpha_ratio"])
    ax.axvline(2, color="#888888", linestyle=":", label="the guide's alpha = 2 x rank")
    ax.set_xlabel("alpha / rank (LoRA scale)")
    return finish_quality_plot(fig, ax, analysis, "Quality against the alpha/rank ratio", path)


def targets(analysis: Analysis, path: Path) -> Path:
    effects = analysis.effects["targets"]
    names = sorted({str(e.value) for e in effects})
    methods = list(dict.fromkeys(e.method for e in effects))
    step = 0.25 if len(methods) > 1 else 0.0
    fig, ax = new_figure()
    for i, method in enumerate(methods):
        mine = [e for e in effects if e.method == method]
        offset = (i - (len(methods) - 1) / 2) * step
        xs = [names.index(str(e.value)) + offset for e in mine]
        ys = [e.quality for e in mine]
        errors = error_bars(mine)
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
    quality_axis(ax, analysis)
    ax.set_xlabel("target modules")
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title("Quality by LoRA target modules (best configuration each; bars: 95% interval)")
    ax.legend(loc="best", fontsize=9)
    return save(fig, path)
