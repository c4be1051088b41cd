"""bench/'s plumbing (no timings asserted): what it measures with runs, how it reads goals."""

from __future__ import annotations

import pytest

from bench.common import NoRecord, alternate, pair_ratios
from bench.run import GOALS, met, parse, table


def test_the_bare_side_runs_the_trial_code_recording_nothing(tiny_config):
    from ftsweep.trial import _train_and_evaluate

    metrics = _train_and_evaluate(tiny_config("train.checkpoint_every=1"), NoRecord(), None, False)
    assert 0.0 <= metrics["quality"] <= 1.0 and metrics["tokens_trained"] > 0


def test_sides_alternate_and_rotate_so_drift_hits_both():
    calls = []
    clock = iter(range(1, 100))

    def side(name):
        return lambda: calls.append(name) or float(next(clock))

    walls = alternate({"a": side("a"), "b": side("b")}, reps=3, label="t")
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert pair_ratios(walls["a"], walls["b"]) == [1 / 2, 4 / 3, 5 / 6]


def test_goals_are_met_or_missed_by_their_direction():
    assert met("sweep_overhead_ratio", 1.05) is True and met("sweep_overhead_ratio", 1.2) is False
    assert met("trainer_vs_bare_throughput", 0.97) is True
    assert met("trainer_vs_bare_throughput", 0.90) is False
    assert met("flop_utilisation", 0.5) is None  # reported without a goal
    text = table({"sweep_overhead_ratio": 1.2, "lora_vs_full_step_time": 0.7})
    assert "NO" in next(line for line in text.splitlines() if "sweep_overhead" in line)
    assert set(GOALS) <= {line.split()[0] for line in text.splitlines()[1:]}


def test_settings_parse_and_unknown_groups_are_named(tmp_path, capsys):
    args = parse([f"results_dir={tmp_path}", "figures=steps,flops", "quick=true"])
    assert args.results == tmp_path and args.groups == ["steps"] and args.quick
    with pytest.raises(SystemExit):
        parse(["figures=nosuch"])
    assert "figures=nosuch: no such group" in capsys.readouterr().err
