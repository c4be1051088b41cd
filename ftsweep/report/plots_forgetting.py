"""The plot of what fine-tuning learned against what it forgot: lift over the base model on the
task against forgetting on general text, one point per method and LoRA rank, both with their 95%
intervals (as in Biderman et al. 2024, "LoRA Learns Less and Forgets Less")."""

from __future__ import annotations

import math
from pathlib import Path

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.forgetting import LiftAndForgetting, lift_and_forgetting_points
from ftsweep.report.plots_common import colour, new_figure, save


def plotted_points(analysis: Analysis) -> list[LiftAndForgetting]:
    """The points the plot has: those whose forgetting was recorded."""
    return [p for p in lift_and_forgetting_points(analysis) if p.forgetting.known]


def _down_up(value: float, low: float, high: float) -> tuple[float, float]:
    # An unknown end draws no bar rather than breaking the plot.
    down, up = value - low, high - value
    return (
        down if math.isfinite(down) and down > 0 else 0.0,
        up if math.isfinite(up) and up > 0 else 0.0,
    )


def lift_vs_forgetting(analysis: Analysis, path: Path) -> Path:
    fig, ax = new_figure()
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.scatter([0], [0], marker="s", s=50, color="#222222", label="base model", zorder=3)
    labelled: set[str] = set()
    for p in plotted_points(analysis):
        f, lift = p.forgetting, p.lift
        ax.errorbar(
            [f.value],
            [lift.value],
            xerr=[[e] for e in _down_up(f.value, f.low, f.high)],
            yerr=[[e] for e in _down_up(lift.value, lift.low, lift.high)],
            fmt="o",
            markersize=7,
            capsize=4,
            color=colour(p.method),
            label=None if p.method in labelled else method_label(p.method),
            zorder=4,
        )
        labelled.add(p.method)
        if p.rank is not None:
            ax.annotate(
                f"r={p.rank}",
                (f.value, lift.value),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
            )
    ax.margins(0.15)  # the bars at the ends stay clear of the frame
    ax.set_xlabel("forgetting: general-text loss after minus before (nats; right is worse)")
    ax.set_ylabel("lift: quality minus the base model's (higher is better)")
    ax.set_title("Learning against forgetting (best configuration per method and rank)")
    ax.legend(loc="best", fontsize=9)
    return save(fig, path)
