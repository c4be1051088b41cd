"""What every plot of the report draws with: a matplotlib Agg figure (no display, no pyplot
state), each method's colour from the registry, the quality axis, and per-method effect lines.

matplotlib is imported inside the functions, so importing the report does not load it.
"""

from __future__ import annotations

from pathlib import Path

from ftsweep.methods import find_method, method_label
from ftsweep.report.analysis import Analysis, Effect

OTHER_COLOUR = "#777777"  # a method the registry does not know
QUALITY_LABEL = "quality (task score, 0 to 1; higher is better)"


def colour(method: str) -> str:
    """The method's colour, the same in every plot."""
    spec = find_method(method)
    return spec.colour if spec is not None else OTHER_COLOUR


def new_figure(width: float = 7.5, height: float = 4.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def quality_axis(ax, analysis: Analysis) -> None:
    qualities = [r.quality for r in analysis.usable]
    if max(qualities) - min(qualities) < 0.01:
        ax.set_ylim(-0.05, 1.05)  # no spread to zoom into: show the whole scale


def effect_lines(ax, effects: list[Effect]) -> None:
    """One line per method through the best configuration's quality at each value, bars its 95%
    interval."""
    for method in dict.fromkeys(e.method for e in effects):
        mine = [e for e in effects if e.method == method]
        xs = [e.value for e in mine]
        ys = [e.quality for e in mine]
        errors = error_bars(mine)
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


def finish_quality_plot(fig, ax, analysis, title: str, path):
    """A quality plot's y axis, title and legend; saved to `path`."""
    quality_axis(ax, analysis)
    ax.set_ylabel(QUALITY_LABEL)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=9)
    return save(fig, path)


def error_bars(effects: list[Effect]) -> list[list[float]]:
    """matplotlib's asymmetric `yerr`: each point's distance down and up to its 95% interval."""
    return [
        [max(0.0, e.quality - e.low) for e in effects],
        [max(0.0, e.high - e.quality) for e in effects],
    ]
