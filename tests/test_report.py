"""The experiments-per-dollar report: analysis on hand-made numbers, files on disk, errors.

The `fake_store` runs are recorded as runs were before intervals, test quality and per-example
scores existed: the report must still read them, and say what it cannot tell from them. The
record a trial writes today is tested in tests/test_report_noise.py and test_report_inputs.py.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from ftsweep.config import ConfigError, HardwareConfig
from ftsweep.planning.cost import load_hardware
from ftsweep.report.analysis import analyse, percent_of_full
from ftsweep.report.costs import (
    cheapest_layout,
    effective_tflops,
    price_warnings,
    projected_costs,
    projected_seconds,
)
from ftsweep.report.recommendation import pareto_front, recommend
from ftsweep.report.render import Document, Section, Table
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.report.write import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(
    method,
    quality,
    cost,
    seed=0,
    r=None,
    alpha=None,
    lr=1e-4,
    status="FINISHED",
    stop="completed",
    ci=None,
):
    params = {
        "method": method,
        "learning_rate": str(lr),
        "seed": str(seed),
        "hardware": "cpu",
        "model": "tiny-llama",
    }
    if r:
        params |= {
            "lora_r": str(r),
            "lora_alpha": str(float(alpha or 2 * r)),
            "target_modules": "all-linear",
        }
    metrics = {
        "quality": quality,
        "cost_usd": cost,
        "wall_time_s": cost / load_hardware("cpu").price_per_device_hour * 3600,
        "artifact_mb": 1.0,
    }
    if ci is not None:
        metrics |= {"quality_ci_low": quality - ci, "quality_ci_high": quality + ci}
    return RunRow(
        f"{method}-{r}-{seed}-{quality}", f"{method} r{r} s{seed}", status, stop, params, metrics
    )


def test_pareto_front_keeps_runs_nothing_beats_on_cost_and_quality():
    cheap_bad = row("lora", 0.5, 1.0, r=4)
    dominated = row("lora", 0.4, 2.0, r=8)
    middle = row("lora", 0.7, 2.0, r=16)
    same_cost_worse = row("qlora", 0.6, 2.0, r=16)
    best = row("full", 0.9, 5.0)
    expensive_worse = row("full", 0.8, 6.0, seed=1)
    front = pareto_front([best, dominated, middle, cheap_bad, same_cost_worse, expensive_worse])
    assert front == [cheap_bad, middle, best]


def test_recommend_picks_the_cheapest_config_not_significantly_below_the_best():
    def rows(ci):
        return [
            row("full", 0.90, 10.0, ci=ci),
            row("lora", 0.89, 2.0, r=8, ci=ci),
            row("lora", 0.85, 1.0, r=4, ci=ci),
            row("qlora", 0.88, 1.5, r=8, ci=ci),
        ]

    # 32-example intervals (+-0.1): every difference is inside the noise, so cost decides, and
    # $1.0 against the next $1.5 is beyond the 10% assumed for wall time.
    wide = recommend(rows(0.10))
    assert wide.best.method == "full"
    assert (wide.run.method, wide.run.lora_r) == ("lora", 4)
    assert {g.method for g in wide.contenders} == {"full", "lora", "qlora"}
    assert wide.versus_best[wide.group.ids].how.startswith("unpaired, from logged intervals")
    assert not wide.noise.measured and wide.noise.share == pytest.approx(0.10)
    # Tight intervals (+-0.01): r=4's 0.85 is significantly below 0.90, QLoRA's 0.88 too.
    tight = recommend(rows(0.01))
    assert (tight.run.method, tight.run.lora_r) == ("lora", 8)
    assert {(g.method, g.first.lora_r) for g in tight.contenders} == {("full", None), ("lora", 8)}


def test_without_intervals_point_estimates_decide_and_only_exact_ties_tie():
    rows = [row("full", 0.90, 10.0), row("lora", 0.89, 2.0, r=8), row("lora", 0.90, 1.0, r=4)]
    rec = recommend(rows)
    assert [g.first.lora_r for g in rec.contenders] == [4, None]
    assert rec.run.lora_r == 4
    assert (
        rec.versus_best[rec.contenders[1].ids].how == "point estimates only: no interval recorded"
    )


def test_seed_spread_makes_a_tie_and_failed_runs_do_not_count():
    rows = [
        row("full", 0.90, 10.0),
        row("lora", 0.80, 2.0, r=8, seed=0),
        row("lora", 0.90, 2.0, r=8, seed=1),  # spread 0.10: the seeds cannot tell 0.85 from 0.90
        row("lora", 0.99, 0.1, r=64, status="FAILED", stop="oom"),
        row("lora", 0.99, 0.1, r=32, stop="early_stopped"),
    ]
    rec = recommend(rows)
    assert (rec.group.method, rec.group.n) == ("lora", 2)
    assert rec.estimate(rec.group).value == pytest.approx(0.85)
    assert rec.versus_best[rec.group.ids].tie and rec.versus_best[
        rec.group.ids
    ].seed_spread == pytest.approx(0.10)
    assert rec.run.quality == 0.90  # the better seed of the chosen configuration
    assert len(rec.groups) == 2
    # Without the second seed there is no spread, and 0.80 is not 0.90.
    assert recommend([rows[0], rows[1]]).run.method == "full"


def test_why_a_run_is_left_out():
    assert row("lora", 0.9, 1.0, r=8).left_out_reason is None
    assert (
        row("lora", 0.9, 1.0, r=8, status="FAILED", stop="diverged").left_out_reason
        == "failed (diverged)"
    )
    assert (
        row("lora", 0.9, 1.0, r=8, status="KILLED", stop="interrupted").left_out_reason
        == "killed (interrupted)"
    )
    assert row("lora", 0.9, 1.0, r=8, status="RUNNING", stop="running").left_out_reason == "running"
    assert (
        row("lora", 0.9, 1.0, r=8, stop="early_stopped").left_out_reason
        == "stopped early by the scheduler"
    )
    assert row("lora", float("nan"), 1.0, r=8).left_out_reason == "no quality or cost recorded"


def test_recommend_without_usable_runs_is_none():
    assert recommend([row("lora", 0.9, 1.0, r=8, status="FAILED", stop="failed")]) is None


def test_percent_of_full_uses_the_best_full_run_and_needs_one():
    rows = [
        row("full", 0.80, 10.0),
        row("full", 0.50, 9.0, seed=1, lr=1e-5),
        row("lora", 0.76, 1.0, r=8),
    ]
    (pct,) = percent_of_full(rows)
    assert pct.mean == pytest.approx(95.0)
    assert math.isnan(pct.low) and math.isnan(pct.high)  # no interval recorded: unknown
    assert percent_of_full([row("lora", 0.7, 1.0, r=8)]) is None
    assert percent_of_full([row("full", 0.0, 1.0), row("lora", 0.7, 1.0, r=8)]) is None


def test_projection_scales_time_by_the_ratio_of_reachable_tflops():
    assert projected_seconds(312.0, 0.18, 312.0) == pytest.approx(0.18)
    assert projected_seconds(100.0, 1.0, 1.0) == 100.0
    hw = dict(
        device="cuda",
        price_per_device_hour=1.0,
        price_source="s",
        price_date="2026-11-28",
        memory_gb=16,
    )
    assert effective_tflops(
        HardwareConfig(name="g", peak_tflops=100, mfu=0.4, **hw)
    ) == pytest.approx(40.0)


def test_old_or_unreadable_price_dates_are_warned_about():
    hw = dict(
        name="x1",
        device="cuda",
        price_per_device_hour=2.0,
        price_source="a price list",
        memory_gb=80,
        peak_tflops=100,
    )
    today = dt.date(2026, 11, 29)
    fresh = HardwareConfig(**hw, price_date="2026-10-01")
    old = HardwareConfig(**hw, price_date="2026-01-15")
    garbled = HardwareConfig(**hw, price_date="last spring")
    assert price_warnings([fresh], today) == []
    (warning,) = price_warnings([old], today)
    assert "x1" in warning and "318 days old" in warning and "a price list" in warning
    (warning,) = price_warnings([garbled], today)
    assert "'last spring'" in warning


def test_load_rows_reads_the_tracking_contract(fake_store):
    uri, ids = fake_store
    rows = load_rows(uri, "fake")
    assert len(rows) == 10
    by_id = {r.run_id: r for r in rows}
    failed, early = by_id[ids[8]], by_id[ids[9]]
    assert (failed.usable, failed.left_out_reason, failed.error) == (
        False,
        "failed (oom)",
        "OutOfMemoryError: CUDA out of memory",
    )
    assert (early.usable, early.left_out_reason) == (False, "stopped early by the scheduler")
    lora = by_id[ids[2]]
    assert (lora.method, lora.lora_r, lora.alpha_ratio, lora.targets, lora.seed) == (
        "lora",
        8,
        2.0,
        "all-linear",
        "0",
    )
    assert lora.knobs == "r=8, alpha=16, targets=all-linear, lr=1e-04"
    assert by_id[ids[0]].knobs == "ZeRO-2, lr=1e-05"


def test_analysis_of_the_fake_sweep(fake_store):
    uri, ids = fake_store
    a = analyse(uri, "fake", target_gpu="a100-80gb", today=dt.date(2026, 11, 29))
    assert len(a.usable) == 8 and len(a.left_out) == 2
    assert a.recommendation.run.run_id == ids[3]  # LoRA r=8, the better of its two seeds
    assert [r.run_id for r in a.front] == [ids[6], ids[2], ids[3], ids[1]]
    lora_r8 = next(
        p for p in a.percents if p.group.knobs.startswith("r=8") and p.group.method == "lora"
    )
    assert lora_r8.mean == pytest.approx(0.825 / 0.84 * 100)
    assert math.isnan(lora_r8.low) and math.isnan(lora_r8.high)  # old runs: no interval
    # Old runs: one inputs group by their params, no scores, no intervals; nothing crashes.
    assert a.inputs is not None and not a.inputs.tagged
    assert len(a.without_scores()) == len(a.usable)
    assert all(a.estimate(g).interval is None for g in a.groups)
    costs = {c.method: c for c in a.costs}
    assert costs["full"].cost_usd == pytest.approx(0.0105)
    assert costs["full"].experiments_per_dollar == pytest.approx(1 / 0.0105)
    # Projected: the measured tokens at the plan's speed on the method's cheapest a100 layout,
    # the rest of the wall time (start-up, evaluation) scaled by effective TFLOP/s.
    projected = {c.method: c for c in a.projected}
    cpu, a100 = load_hardware("cpu"), load_hardware("a100-80gb")
    speedup = (a100.peak_tflops * a100.mfu) / (cpu.peak_tflops * cpu.mfu)
    full_runs = [r for r in a.usable if r.method == "full"]
    option = cheapest_layout(full_runs[0], a100, [])
    seconds = [
        r.metrics["tokens_trained"] / option.est_tokens_per_s
        + (r.wall_time_s - r.metrics["train_time_s"]) / speedup
        for r in full_runs
    ]
    assert projected["full"].wall_time_s == pytest.approx(sum(seconds) / len(seconds))
    assert projected["full"].cost_usd == pytest.approx(
        option.num_gpus * projected["full"].wall_time_s / 3600 * 1.79
    )
    assert projected["full"].devices.startswith(f"{option.num_gpus}x a100-80gb")


def test_each_method_is_projected_on_its_own_cheapest_layout():
    # llama-2-7b at batch 4: full fine-tuning needs ZeRO over several 80 GB GPUs, LoRA one
    def row(method, **params):
        params = {"method": method, "model": "llama-2-7b", "hardware": "cpu", "batch_size": "4"}
        params |= {"seq_len": "256", "precision": "fp32"}
        metrics = {"quality": 0.5, "cost_usd": 1.0, "wall_time_s": 100.0, "train_time_s": 90.0}
        metrics["tokens_trained"] = 10_000.0
        return RunRow(method, method, "FINISHED", "completed", params | extra(method), metrics)

    def extra(method):
        return {"lora_r": "16", "target_modules": "all-linear"} if method == "lora" else {}

    a100 = load_hardware("a100-80gb")
    projected, notes = projected_costs(
        [row("full"), row("lora")], a100, {"cpu": load_hardware("cpu")}
    )
    devices = {c.method: c.devices for c in projected}
    assert devices["lora"].startswith("1x a100-80gb")
    full = cheapest_layout(row("full"), a100, [])
    assert full.num_gpus > 1 and full.zero_stage in (2, 3)
    assert devices["full"].startswith(f"{full.num_gpus}x a100-80gb ({full.layout})")
    assert any("not calibrated" in n for n in notes)  # CPU runs say nothing of a GPU's speed


def _report_text(out: Path) -> tuple[str, str]:
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_report_files_on_the_fake_sweep(fake_store, tmp_path):
    uri, ids = fake_store
    path = write_report(uri, "fake", tmp_path / "fake", target_gpu="a100-80gb")
    assert path == tmp_path / "fake" / "report.md"
    md, page = _report_text(tmp_path / "fake")

    assert (
        "**Use LoRA (r=8, alpha=16, targets=all-linear, lr=1e-04): quality 0.825 (no interval)"
        in md
    )
    assert ids[3] in md  # the recommended run, by id
    assert "no test quality recorded (a run from before the test split)" in md
    # Within the seeds' spread (0.815 and 0.835) of the best, 0.840: a tie, broken by the plan.
    assert "2 configurations not significantly below the best" in md
    assert "the cheapest on a100-80gb by the plan" in md
    assert "have no per-example scores (scores/scores.json; runs recorded before them)" in md
    assert (
        "The recommended configuration reaches 98.2% (no interval) of the best full fine-tuning"
        in md
    )
    assert "LoRA reached 99.4% (no interval) of the best full fine-tuning configuration" in md
    assert "QLoRA reached 95.2% (no interval)" in md
    assert "## What this sweep cannot tell" in md
    # The guide's cost table, measured and projected.
    assert "| Factor | Full fine-tuning | LoRA | QLoRA |" in md
    assert md.count("| Experiments per dollar (measured) |") == 1
    assert md.count("| Experiments per dollar (projected) |") == 1
    assert "95.2 (guide: 1-2)" in md  # 1 / $0.0105
    assert "Projected to a100-80gb" in md
    # Claims: nothing here tuned its learning rate at a setting, so no quality claim is testable.
    claims = md.split("## The guide's claims, re-measured")[1].split("## Quality against cost")[0]
    assert (
        "| r=8 captures style and format | not testable | r=8: 0.825 (no interval); best other, "
        "r=16: 0.835 (no interval)" in claims
    )
    assert "learning rate not tuned at this setting (tried 1e-04; three or more" in claims
    assert "| An adapter is 50-200 MB against 14 GB (70-280x smaller) | contradicted |" in claims
    assert "Evidence: r=8 captures style and format (not testable)." in claims
    # Failed and early-stopped runs are counted apart, not used.
    left_out = md.split("## Runs left out")[1]
    used = md.split("## All runs used")[1].split("## Runs left out")[0]
    assert "failed (oom)" in left_out and "stopped early by the scheduler" in left_out
    assert ids[8][:8] not in used and ids[9][:8] not in used

    plots = sorted(p.name for p in (tmp_path / "fake" / "plots").glob("*.png"))
    expected = {
        "quality_vs_cost",
        "experiments_per_dollar",
        "percent_of_full",
        "quality_vs_rank",
        "learning_rate",
    }
    assert expected | {"alpha_ratio", "targets"} == {p.removesuffix(".png") for p in plots}
    for png in plots:
        data = (tmp_path / "fake" / "plots" / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        assert f"](plots/{png})" in md
        assert f'<img src="plots/{png}"' in page
    assert page.count("<img ") == len(plots)
    assert "<table>" in page and "Use LoRA (r=8" in page


def test_the_report_warns_about_old_prices(fake_store):
    from ftsweep.report.sections import build_document

    uri, _ = fake_store
    analysis = analyse(uri, "fake", target_gpu="a100-80gb", today=dt.date(2027, 6, 1))
    md = build_document(analysis, {}).to_markdown()
    assert "Prices older than 90 days:" in md
    cpu = load_hardware("cpu")
    assert f"- cpu: price ${cpu.price_per_device_hour:g}/device-hour is from {cpu.price_date}" in md
    assert "- a100-80gb: price $1.79/device-hour is from 2026-11-28" in md
    fresh = analyse(uri, "fake", target_gpu="a100-80gb", today=dt.date(2026, 12, 1))
    assert "Prices older" not in build_document(fresh, {}).to_markdown()


def test_report_without_a_full_baseline_and_one_method(fake_store, tmp_path):
    uri, _ = fake_store
    write_report(uri, "fake-lora", tmp_path)
    md, _ = _report_text(tmp_path)
    assert "No full fine-tuning baseline in this sweep" in md
    assert "No Full fine-tuning run finished" in md and "No QLoRA run finished" in md
    assert "| Factor | LoRA |" in md
    assert "No target GPU chosen: pass target=NAME" in md
    assert not (tmp_path / "plots" / "percent_of_full.png").exists()
    assert (tmp_path / "plots" / "quality_vs_cost.png").exists()


def test_plots_from_an_earlier_report_do_not_linger(fake_store, tmp_path):
    uri, _ = fake_store
    write_report(uri, "fake", tmp_path)
    assert (tmp_path / "plots" / "percent_of_full.png").exists()
    write_report(uri, "fake-lora", tmp_path)
    assert not (tmp_path / "plots" / "percent_of_full.png").exists()


def test_errors_name_the_value_and_what_exists(fake_store, tmp_path):
    uri, _ = fake_store
    with pytest.raises(
        ConfigError,
        match=r"no sweep named 'nope' .*sweeps there: empty, fake, fake-full, fake-lora\)",
    ):
        write_report(uri, "nope", tmp_path)
    with pytest.raises(ConfigError, match=r"sweep 'empty' has no runs"):
        write_report(uri, "empty", tmp_path)
    with pytest.raises(
        ConfigError, match=r"target=h900: no such hardware \(allowed: .*a100-80gb.*cpu"
    ):
        write_report(uri, "fake", tmp_path, target_gpu="h900")
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(ConfigError, match="no MLflow store at"):
        write_report(f"sqlite:///{missing}", "fake", tmp_path)
    assert not missing.exists()
    assert not (tmp_path / "report.md").exists()


def test_render_escapes_table_cells_in_both_formats():
    doc = Document("t", [], [Section("s", ["a <b> & c", Table(["k"], [["x | y <i>"]])])])
    assert "x \\| y <i>" in doc.to_markdown()
    html = doc.to_html()
    assert "a &lt;b&gt; &amp; c" in html and "x | y &lt;i&gt;" in html


@pytest.mark.slow
def test_report_on_real_tiny_trials(trial_store, tmp_path):
    uri, _ = trial_store
    path = write_report(uri, "tiny", tmp_path, target_gpu="a100-80gb")
    md = path.read_text()
    assert "## Recommendation" in md and "**Use " in md
    assert "| Factor | Full fine-tuning | LoRA | QLoRA |" in md
    assert "| Cost per run (measured) |" in md and "| Storage per model (measured) |" in md
    assert "| Cost per run (projected) |" in md
    assert len(list((tmp_path / "plots").glob("*.png"))) >= 2
    rows = load_rows(uri, "tiny")
    assert len(rows) == 5 and all(r.usable for r in rows)
    # The record a trial writes: one inputs id, per-example scores read back, test quality.
    a = analyse(uri, "tiny")
    assert a.inputs.tagged and a.without_scores() == []
    assert all(a.estimate(g).source == "per-example scores" for g in a.groups)
    assert all(r.logged_interval() and r.logged_interval("test_") for r in rows)
    assert "paired over 8 examples" in md


def test_the_report_never_shows_a_password_from_the_tracking_uri(fake_store):
    import dataclasses

    from ftsweep.report.sections import build_document

    uri, _ = fake_store
    analysis = dataclasses.replace(
        analyse(uri, "fake"), tracking_uri="http://mlflow:s3cret@tracking:5000"
    )
    md = build_document(analysis, {}).to_markdown()
    assert "s3cret" not in md and "http://mlflow:***@tracking:5000" in md
