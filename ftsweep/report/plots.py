"""The report's plots: which ones a sweep has data for, drawn as PNG files (`draw_all`).

Each plot is drawn only when the sweep has something to show in it: a knob tried at one value
makes no curve. Every method keeps its colour across plots (`plots_common.colour`).
"""

from __future__ import annotations

from pathlib import Path

from ftsweep.report.analysis import Analysis, distinct_values
from ftsweep.report.plots_compare import experiments_per_dollar, percent_of_full, quality_vs_cost
from ftsweep.report.plots_forgetting import lift_vs_forgetting, plotted_points
from ftsweep.report.plots_knobs import alpha_ratio, learning_rate, quality_vs_rank, targets

DRAWERS = {
    "quality_vs_cost": quality_vs_cost,
    "experiments_per_dollar": experiments_per_dollar,
    "percent_of_full": percent_of_full,
    "lift_vs_forgetting": lift_vs_forgetting,
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
    if plotted_points(analysis):  # a base model to lift from, and runs that recorded forgetting
        names.append("lift_vs_forgetting")
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
