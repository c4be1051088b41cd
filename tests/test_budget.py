"""Budgets: spending is read from recorded runs, a trial's cost is estimated from measured ones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ftsweep.sweep.budget import estimate_trial, over_budget, spent


def _run(run_id, method, status="FINISHED", steps=10, cost=None, wall=None):
    metrics = {}
    if cost is not None:
        metrics |= {"cost_usd": cost, "wall_time_s": wall}
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, status=status),
        data=SimpleNamespace(params={"method": method, "max_steps": str(steps)}, metrics=metrics),
    )


@pytest.fixture
def cfg(tiny_config):
    return tiny_config(
        "method=lora", "train.max_steps=20", "++sweep.budget_usd=1.0", "++sweep.time_budget_s=1000"
    )


def test_estimate_scales_measured_rate_by_steps(cfg):
    runs = [
        _run("a", "lora", cost=0.10, wall=50),
        _run("b", "lora", cost=0.30, wall=150),
        _run("c", "full", cost=5, wall=900),
    ]
    estimate = estimate_trial(cfg, runs)
    # lora: mean $0.02/step and 10 s/step over 10-step runs -> 20 steps cost $0.40 and 200 s
    assert estimate.usd == pytest.approx(0.40)
    assert estimate.seconds == pytest.approx(200)


def test_no_estimate_before_anything_finished(cfg):
    assert estimate_trial(cfg, [_run("a", "lora", status="RUNNING")]) is None
    assert over_budget(cfg, []) is None


def test_other_methods_stand_in_for_an_unmeasured_one(cfg):
    estimate = estimate_trial(cfg, [_run("c", "full", cost=0.5, wall=100)])
    assert estimate.usd == pytest.approx(1.0)


def test_running_runs_count_at_their_estimate(cfg):
    runs = [_run("a", "lora", cost=0.2, wall=100), _run("r", "lora", status="RUNNING", steps=10)]
    assert spent(runs).usd == pytest.approx(0.4)
    assert spent(runs, own_run_id="r").usd == pytest.approx(0.2)


def test_trial_refused_when_estimate_passes_the_dollar_budget(cfg):
    runs = [_run("a", "lora", cost=0.45, wall=10), _run("b", "lora", cost=0.05, wall=10)]
    # spent $0.50; next 20-step trial ~ $0.50 -> exactly at budget: allowed
    assert over_budget(cfg, runs) is None
    # spent $0.70; mean rate $0.0233/step -> next trial ~ $0.47 -> $1.17 > $1.00
    runs.append(_run("c", "lora", cost=0.20, wall=10))
    reason = over_budget(cfg, runs)
    assert reason is not None and "sweep.budget_usd" in reason


def test_trial_refused_when_estimate_passes_the_time_budget(cfg):
    runs = [_run("a", "lora", cost=0.001, wall=600)]
    reason = over_budget(cfg, runs)
    assert reason is not None and "sweep.time_budget_s" in reason


def test_no_budget_never_refuses(tiny_config):
    cfg = tiny_config("method=lora")
    assert over_budget(cfg, [_run("a", "lora", cost=1e9, wall=1e9)]) is None
