"""What a sweep spent, by kind of run: every run that used compute is counted once.

A run's `cost_usd` covers every attempt it made (`ftsweep.trial.attempts`); the part spent in
attempts that broke off (`lost_wall_time_s` of its `wall_time_s`) is its own line, so the lines
add up to the sweep's total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftsweep.report.runs import RunRow

KINDS = ("completed", "early-stopped", "failed", "interrupted", "base model", "lost to failures")


@dataclass
class SpendLine:
    kind: str
    runs: int = 0
    wall_time_s: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Spend:
    lines: list[SpendLine]  # one per kind in KINDS, empty kinds included
    unpriced: list[RunRow]  # runs that recorded no cost (recorded before runs were priced)
    running: list[RunRow]  # runs still under way: their cost is not known yet

    @property
    def total_usd(self) -> float:
        return sum(line.cost_usd for line in self.lines)

    @property
    def total_wall_time_s(self) -> float:
        return sum(line.wall_time_s for line in self.lines)


def kind_of(row: RunRow, is_base_model: bool = False) -> str:
    if is_base_model:
        return "base model"
    if row.status == "FINISHED":
        return "early-stopped" if row.stop_reason == "early_stopped" else "completed"
    return "failed" if row.status == "FAILED" else "interrupted"


def sweep_spend(rows: list[RunRow], base_models: list[RunRow]) -> Spend:
    """The cost of `rows` (the sweep's trials) and `base_models` (its untrained-model runs)."""
    lines = {kind: SpendLine(kind) for kind in KINDS}
    unpriced, running = [], []
    for row, is_base in [*((r, False) for r in rows), *((r, True) for r in base_models)]:
        if row.status == "RUNNING":
            running.append(row)
            continue
        cost, wall = row.cost_usd, row.wall_time_s
        if not (math.isfinite(cost) and math.isfinite(wall)):
            if row.stop_reason != "skipped_budget":  # never launched: nothing to price
                unpriced.append(row)
            continue
        lost = min(max(row.metrics.get("lost_wall_time_s", 0.0), 0.0), wall)
        lost_cost = cost * lost / wall if wall > 0 else 0.0
        line = lines[kind_of(row, is_base)]
        line.runs += 1
        line.wall_time_s += wall - lost
        line.cost_usd += cost - lost_cost
        if lost > 0:
            lines["lost to failures"].runs += 1
            lines["lost to failures"].wall_time_s += lost
            lines["lost to failures"].cost_usd += lost_cost
    return Spend(list(lines.values()), unpriced, running)
