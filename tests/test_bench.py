"""bench/'s plumbing (no timings asserted): what it measures with runs, how it reads goals."""

from __future__ import annotations

import pytest

from bench.common import NoRecord, alternate, pair_ratios
from bench.run import GOALS, met, parse, table


def test_the_bare_side_runs_the_trial_code_recording_nothing(tiny_config):
    from ftsweep.trial.recipe import train_and_evaluate

    metrics = train_and_evaluate(
        tiny_config("train.checkpoint_every=1"), NoRecord.trial_id, NoRecord(), None
    )
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


def test_asha_replay_stops_the_trials_rays_own_bracket_stops():
    import random

    from ray.tune.schedulers.async_hyperband import _Bracket

    from bench.asha import replay_asha

    rng = random.Random(0)
    steps, grace, factor = 12, 2, 3
    losses = [[rng.uniform(0.2, 4.0) for _ in range(steps)] for _ in range(16)]

    bracket = _Bracket(min_t=grace, max_t=steps, reduction_factor=factor, s=0)
    ray_stops = []
    for i, trial_losses in enumerate(losses):
        trial = type("Trial", (), {"trial_id": str(i)})()
        stop = steps
        for step, loss in enumerate(trial_losses, start=1):
            if bracket.on_result(trial, step, -loss) == "STOP":
                stop = step
                break
        ray_stops.append(stop)

    replayed = replay_asha(losses, grace, factor)
    assert replayed == ray_stops
    assert 0 < replayed.count(steps) < len(losses)  # some stopped, some finished


def test_grace_scan_counts_compute_and_the_gap_to_the_grids_best():
    from bench.asha import best_rank_by_step, grace_scan

    # the best trial (quality 0.9) starts worst and ends best: an early rung cuts it
    trials = [
        {"quality": 0.9, "eval_loss_by_step": [3.0, 3.0, 0.1, 0.1]},
        {"quality": 0.5, "eval_loss_by_step": [1.0, 0.9, 0.8, 0.7]},
        {"quality": 0.4, "eval_loss_by_step": [1.1, 1.0, 0.9, 0.8]},
    ]
    ordered = [trials[1], trials[2], trials[0]]
    rows = {(r["reduction_factor"], r["grace_steps"]): r for r in grace_scan(ordered, (2,))}
    assert rows[(2, 1)]["best_quality_gap"] == pytest.approx(0.4)
    assert rows[(2, 1)]["compute_fraction"] < 1.0
    assert rows[(2, 2)]["best_quality_gap"] == pytest.approx(0.4)
    assert best_rank_by_step(ordered) == [3, 3, 1, 1]


def test_memory_calibration_uses_only_the_other_cases_of_a_method():
    from bench.common import compose
    from bench.memory import SETTINGS, calibrated_estimates, case_overrides
    from ftsweep.planning.plan import estimate_trial

    s = SETTINGS["quick"]

    def case(method, batch, scale):
        cfg = compose(case_overrides(s["model"], method, batch, s["seq_len"], s["steps"]))
        option = estimate_trial(cfg)
        runtime = option.breakdown_gb["runtime"]
        # a measurement whose model part is `scale` x the plan's (peak RSS includes the runtime)
        measured = runtime + scale * (option.est_peak_gb_per_gpu - runtime)
        stage = getattr(cfg.method, "zero_stage", None)
        return {"method": method, "batch_size": batch, "zero_stage": stage, "measured_gb": measured}

    # both LoRA cases 1.5x the plan: each, calibrated by the other, is then exact; the full
    # fine-tuning case has no other case of its method and keeps the plain estimate
    cases = [case("lora", 1, 1.5), case("lora", 4, 1.5), case("full", 1, 1.2)]
    calibrated = calibrated_estimates(cases, s)
    assert calibrated[0] == pytest.approx(cases[0]["measured_gb"], rel=1e-3)
    assert calibrated[1] == pytest.approx(cases[1]["measured_gb"], rel=1e-3)
    full = estimate_trial(compose(case_overrides(s["model"], "full", 1, s["seq_len"], s["steps"])))
    assert calibrated[2] == pytest.approx(full.est_peak_gb_per_gpu)


def test_per_trial_overhead_is_the_slot_time_beyond_the_trials_own():
    from bench.trial_overhead import figure

    # launched at 0, first run at 10; trials of 2 s own time, each run open 2.5 s, 0.5 s apart
    runs = [{"start": 10.0 + 3 * i, "end": 12.5 + 3 * i, "wall_time_s": 2.0} for i in range(4)]
    d = figure(runs, launched=0.0, wall=25.0)
    assert d["span_s"] == pytest.approx(11.5) and d["own_s"] == pytest.approx(8.0)
    assert d["per_trial_overhead_s"] == pytest.approx((11.5 - 8.0) / 4)
    assert d["per_trial_overhead_with_fixed_s"] == pytest.approx((25.0 - 8.0) / 4)
    assert d["startup_s"] == pytest.approx(10.0) and d["end_s"] == pytest.approx(3.5)
    assert d["run_open_extra_mean_s"] == pytest.approx(0.5)
    assert d["gap_mean_s"] == pytest.approx(0.5)
    assert d["by_quarter_s"] == pytest.approx([1.0, 1.0, 1.0, 0.5])  # the last has no gap after
    # Ray's page: 10,000 trials of 1 s on 16 slots in 715.27 s
    ray = figure(
        [{"start": 0.0, "end": 715.27, "wall_time_s": 1.0}] * 10_000,
        launched=0.0,
        wall=715.27,
        concurrency=16,
    )
    assert ray["per_trial_overhead_s"] == pytest.approx(0.144, abs=1e-3)


def test_the_store_scale_grid_holds_the_real_sweeps_trials(tmp_path):
    from bench.common import compose
    from bench.store_scale import RANKS, REAL_TRIALS, grid_points, overrides, sweep_file
    from ftsweep.sweep.space import expand

    rates, seeds = grid_points(80)
    assert len(rates) * len(RANKS) * seeds == 80
    with pytest.raises(ValueError):
        grid_points(90)
    big = sweep_file(tmp_path / "big.yaml", rates, RANKS, seeds)
    real = sweep_file(tmp_path / "real.yaml", rates[:1], RANKS[:1], REAL_TRIALS)
    grid = {s.trial_id for s in expand(compose(overrides(big, tmp_path)))}
    ran = {s.trial_id for s in expand(compose(overrides(real, tmp_path)))}
    assert len(grid) == 80 and len(ran) == REAL_TRIALS and ran <= grid


def test_cloned_runs_are_the_grids_trials_and_the_report_reads_every_one(tmp_path):
    import json

    from mlflow.entities import Metric, Param

    from bench.common import compose
    from bench.store_scale import (
        RANKS,
        clone_runs,
        finished_count,
        grid_points,
        overrides,
        report_runs,
        store_state,
        sweep_file,
    )
    from ftsweep.report.runs import load_rows
    from ftsweep.sweep.space import expand
    from ftsweep.tracking.record import TAG_TRIAL_ID, run_params
    from ftsweep.tracking.store import ensure_experiment, experiment_name, get_client, tracking_uri

    rates, seeds = grid_points(40)
    args = overrides(sweep_file(tmp_path / "big.yaml", rates, RANKS, seeds), tmp_path / "results")
    cfg = compose(args)
    specs = expand(cfg)
    # a stand-in for the real sweep's run: the grid's first trial, with scores
    (tmp_path / "results").mkdir()
    uri = tracking_uri(cfg)
    client = get_client(uri)
    experiment_id = ensure_experiment(
        client, experiment_name(cfg), cfg.results_path / "mlartifacts"
    )
    first = specs[0]
    run = client.create_run(
        experiment_id, run_name=first.run_name, tags={TAG_TRIAL_ID: first.trial_id}
    )
    client.log_batch(
        run.info.run_id,
        metrics=[
            Metric(key, value, 0, 1)
            for key, value in {"quality": 0.5, "cost_usd": 1e-4, "wall_time_s": 2.0}.items()
        ],
        params=[Param(k, str(v)) for k, v in run_params(first.config).items()],
    )
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"validation": {"ids": ["a", "b"], "scores": [1.0, 0.0]}}))
    client.log_artifact(run.info.run_id, str(scores), artifact_path="scores")
    client.set_terminated(run.info.run_id, status="FINISHED")

    built = clone_runs(args)
    assert built["specs"] == 40 and built["real"] == 1 and built["cloned"] == 39
    rows = load_rows(uri, experiment_name(cfg))
    assert sorted(r.tags[TAG_TRIAL_ID] for r in rows) == sorted(s.trial_id for s in specs)
    assert all(r.usable and r.quality == 0.5 for r in rows)
    by_id = {r.tags[TAG_TRIAL_ID]: r for r in rows}
    last = specs[-1]
    assert by_id[last.trial_id].params["lora_r"] == str(last.config.method.lora_r)
    assert by_id[last.trial_id].name == last.run_name
    from ftsweep.report.scores import ScoreSource

    assert ScoreSource().scores(by_id[last.trial_id]).validation == {"a": 1.0, "b": 0.0}
    state = store_state(args)
    assert state["runs"] == 40 and state["trial_ids"] == 40
    assert state["statuses"] == {"FINISHED": 40}

    assert finished_count("best run per method (39/40 trials finished)") == (39, 40)
    assert report_runs("40 runs recorded in sqlite:///x/mlflow.db: 38 used, 2 left out (a).") == {
        "recorded": 40,
        "used": 38,
        "left_out": 2,
    }


# --- auto against the full grid ----------------------------------------------------------------


def _auto_row(trial_id, method="lora", lr=1e-3, stop="completed", **metrics):
    from ftsweep.report.runs import RunRow
    from ftsweep.tracking.record import TAG_TRIAL_ID

    params = {"method": method, "learning_rate": str(lr), "lora_r": "16", "hardware": "cpu"}
    return RunRow(
        run_id=f"run-{trial_id}",
        name=f"{method} r16 lr{lr:.0e} s0",
        status="FINISHED",
        stop_reason=stop,
        params={**params, "seed": "0"},
        metrics={"cost_usd": 0.01, "wall_time_s": 60.0, **metrics},
        tags={TAG_TRIAL_ID: trial_id},
    )


def test_auto_tokens_count_each_trial_once_and_early_stops_at_what_they_reported(tmp_path):
    import json

    from bench.auto import compute_fraction, reported_tokens, trial_tokens

    # Tune's result.json: intermediate reports carry `tokens`, the last one `tokens_trained`
    stopped = tmp_path / "ray" / "auto-1234abcd" / "lora-stopped"
    stopped.mkdir(parents=True)
    lines = [{"tokens": 400, "step": 2}, {"tokens": 800, "step": 4, "eval_loss": 1.0}]
    lines = [{**x, "config": {"trial_id": "lora-stopped"}} for x in lines]
    (stopped / "result.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut")
    reported = reported_tokens(tmp_path)
    assert reported == {"lora-stopped": 800.0}

    auto_rows = [
        _auto_row("none-base", method="none"),  # the base model trains nothing
        _auto_row("lora-done", tokens_trained=1200.0, quality=0.5),
        _auto_row("lora-done", tokens_trained=1200.0, quality=0.5),  # the same trial again
        _auto_row("lora-stopped", lr=3e-3, stop="early_stopped"),
        _auto_row("lora-refused", lr=3e-4, stop="skipped_budget"),
    ]
    auto = trial_tokens(auto_rows, reported)
    assert auto == {
        "none-base": 0.0,
        "lora-done": 1200.0,
        "lora-stopped": 800.0,
        "lora-refused": 0.0,
    }
    grid = {"lora-done": 1200.0, "lora-stopped": 1200.0, "lora-refused": 1200.0, "none-base": 0.0}
    assert compute_fraction(auto, grid) == pytest.approx(2000 / 3600)


class _Scores:
    """Per-example validation scores by run id, as `ScoreSource` gives them."""

    def __init__(self, by_run: dict[str, list[float]]):
        from ftsweep.report.scores import RunScores

        self.found = {
            run_id: RunScores({f"ex{i}": v for i, v in enumerate(values)}, {})
            for run_id, values in by_run.items()
        }

    def scores(self, row):
        return self.found.get(row.run_id)

    def why_none(self, row):
        return None if row.run_id in self.found else "no scores"


def test_auto_same_decision_is_the_reports_paired_interval_against_the_grids_best():
    from types import SimpleNamespace

    from bench.auto import same_decision
    from ftsweep.report.evidence import ConfigGroup, Evidence
    from ftsweep.report.recommendation import recommend

    n = 32
    ones = [1.0] * n
    base = _auto_row("none-base", method="none", quality=0.0)
    best = _auto_row("lora-a", lr=1e-3, quality=1.0)
    close = _auto_row("lora-b", lr=3e-3, quality=31 / 32)
    worse = _auto_row("lora-c", lr=3e-4, quality=0.25)
    only_auto = _auto_row("lora-d", lr=1e-2, quality=0.25)  # a rate the widen stage added
    evidence = Evidence(
        _Scores(
            {
                base.run_id: [0.0] * n,
                best.run_id: ones,
                close.run_id: [0.0] + ones[1:],
                worse.run_id: [1.0] * 8 + [0.0] * 24,
                only_auto.run_id: [1.0] * 8 + [0.0] * 24,
            }
        ),
        resamples=500,
    )
    grid = recommend([base, best, close, worse], evidence=evidence)
    assert grid.best.first is best

    def picks(row):
        return SimpleNamespace(group=ConfigGroup([row]))

    assert same_decision(picks(best), grid, evidence).same
    tie = same_decision(picks(close), grid, evidence)
    assert tie.same and tie.difference[1] <= 0.0 <= tie.difference[2]
    assert "grid's run" in tie.basis
    below = same_decision(picks(worse), grid, evidence)
    assert not below.same and below.difference[1] > 0.0
    outside = same_decision(picks(only_auto), grid, evidence)
    assert not outside.same and "not in the grid" in outside.basis

    # nothing beats the base model on either side: the same (empty) decision
    flat = Evidence(_Scores({r.run_id: [0.0] * n for r in (base, best)}), resamples=200)
    none = recommend([base, best], evidence=flat)
    assert none.group is None
    assert same_decision(SimpleNamespace(group=None), none, flat).same
    assert not same_decision(SimpleNamespace(group=None), grid, evidence).same
    assert not same_decision(picks(best), none, flat).same


def test_the_auto_group_has_goals_for_both_figures():
    assert met("auto_compute_fraction", 0.30) and not met("auto_compute_fraction", 0.5)
    assert met("auto_same_decision", 1.0) and not met("auto_same_decision", 0.0)


def test_a_resume_past_its_limit_is_cut_and_its_progress_lines_are_read(monkeypatch):
    import bench.store_scale as store_scale

    # a stand-in for `ftsweep sweep` that prints two progress lines, then outlives its limit
    script = (
        "echo '[     9s] lora-a (x): RECORDED'; echo '[    15s] lora-b (y): RECORDED'; sleep 30"
    )
    monkeypatch.setattr(store_scale, "ftsweep_command", lambda: ["/bin/sh", "-c", script])
    cut = store_scale.timed_resume([], limit_s=1)
    assert cut["wall_s"] is None
    assert store_scale.progress_times(cut["stdout"], ": RECORDED") == [9.0, 15.0]
    monkeypatch.setattr(store_scale, "ftsweep_command", lambda: ["/bin/sh", "-c", "exit 0"])
    assert store_scale.timed_resume([], limit_s=30)["wall_s"] is not None
