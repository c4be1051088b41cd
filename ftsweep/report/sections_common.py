"""What every section of the report writes with: plurals, the values a param took across runs,
and a plot's figure block with its caption."""

from __future__ import annotations

from ftsweep.report.render import Block, Figure
from ftsweep.report.runs import RunRow

CAPTIONS = {
    "quality_vs_cost": "Quality against cost per run, bars the 95% interval each run logged. The dashed line is the Pareto front (by point estimate); the red circle is the recommended run.",
    "experiments_per_dollar": "Experiments per dollar by method (log scale), measured and projected, beside the guide's ranges.",
    "percent_of_full": "LoRA and QLoRA quality as a percentage of the best full fine-tuning configuration, with the 95% interval of that ratio, against the guide's 95-99%.",
    "quality_vs_rank": "Quality against LoRA rank: the best configuration at each rank, bars its 95% interval.",
    "learning_rate": "Quality against learning rate for each method, bars the 95% interval.",
    "alpha_ratio": "Quality against alpha/rank (the best configuration at each, bars its 95% interval); the dotted line is the guide's alpha = 2 x rank.",
    "targets": "Quality by the modules LoRA adapts (the best configuration each, bars its 95% interval).",
}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def param_values(rows: list[RunRow], key: str) -> list[str]:
    """The values these runs recorded for a param, sorted; `?` where one is missing."""
    return sorted({r.params.get(key, "?") for r in rows})


def figure_blocks(figures: dict[str, str], name: str) -> list[Block]:
    """The named plot with its caption, or nothing when the sweep had no data for it."""
    return [Figure(figures[name], CAPTIONS[name])] if name in figures else []
