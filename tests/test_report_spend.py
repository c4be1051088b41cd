"""What the sweep spent: every priced run counted once, by kind, with the attempts lost to
failures apart, adding up to the total."""

from __future__ import annotations

import pytest

from ftsweep.report.analysis import analyse
from ftsweep.report.runs import RunRow
from ftsweep.report.spend import sweep_spend


def _row(name, status, reason, cost=None, wall=None, lost=None, method="lora") -> RunRow:
    metrics = {}
    if cost is not None:
        metrics |= {"cost_usd": cost, "wall_time_s": wall}
    if lost is not None:
        metrics["lost_wall_time_s"] = lost
    return RunRow(name, name, status, reason, {"method": method}, metrics)


def test_every_priced_run_is_one_line_and_lost_attempts_are_apart():
    rows = [
        _row("done", "FINISHED", "completed", cost=1.0, wall=100.0),
        _row("resumed", "FINISHED", "completed", cost=2.0, wall=200.0, lost=50.0),
        _row("asha", "FINISHED", "early_stopped", cost=0.3, wall=30.0),
        _row("oom", "FAILED", "oom", cost=0.1, wall=10.0),
        _row("ctrl-c", "KILLED", "interrupted", cost=0.2, wall=20.0),
        _row("over budget", "KILLED", "skipped_budget"),  # never launched: nothing to price
        _row("old", "FINISHED", "completed"),  # recorded before runs were priced
        _row("under way", "RUNNING", "running"),  # its cost is not known yet
    ]
    base = [_row("base", "FINISHED", "completed", cost=0.05, wall=5.0, method="base")]
    spend = sweep_spend(rows, base)
    lines = {line.kind: line for line in spend.lines}
    assert lines["completed"].runs == 2
    assert lines["completed"].cost_usd == pytest.approx(1.0 + 1.5)  # the resumed run's own 3/4
    assert lines["completed"].wall_time_s == pytest.approx(100 + 150)
    assert (lines["lost to failures"].runs, lines["lost to failures"].cost_usd) == (1, 0.5)
    assert lines["early-stopped"].cost_usd == pytest.approx(0.3)
    assert lines["failed"].cost_usd == pytest.approx(0.1)
    assert lines["interrupted"].cost_usd == pytest.approx(0.2)
    assert lines["base model"].cost_usd == pytest.approx(0.05)
    assert spend.total_usd == pytest.approx(1.0 + 2.0 + 0.3 + 0.1 + 0.2 + 0.05)
    assert spend.total_wall_time_s == pytest.approx(365.0)
    assert [r.name for r in spend.unpriced] == ["old"]
    assert [r.name for r in spend.running] == ["under way"]


def test_the_report_prints_the_spend_adding_up_to_every_runs_cost(fake_store):
    from ftsweep.report.sections import build_document

    uri, _ = fake_store
    a = analyse(uri, "fake")
    md = build_document(a, {}).to_markdown()
    assert "## What the sweep spent" in md
    recorded = sum(r.cost_usd for r in a.rows)  # completed, early-stopped and failed alike
    assert a.spend.total_usd == pytest.approx(recorded)
    assert "| early-stopped | 1 |" in md and "| failed | 1 |" in md
