"""ftsweep auto: the design from data, plan and budget, its sweep file, the stopping rule, and
(slow) the whole command on tiny-llama within a time budget."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from ftsweep.auto import learning_rates as lr
from ftsweep.auto.command import check_overrides, parse_budget
from ftsweep.auto.design import Budget, design, with_gpu_precision
from ftsweep.auto.profile import profile_data
from ftsweep.auto.stopping import compare_scores, decide
from ftsweep.auto.sweep_file import sweep_text, write_sweep_file
from ftsweep.config import ConfigError, compose


def _design(overrides: list[str], budget: Budget):
    cfg = compose(overrides)
    cfg, note = with_gpu_precision(cfg, {o.split("=", 1)[0] for o in overrides})
    return design(cfg, profile_data(cfg), budget), note


# --- learning rates ------------------------------------------------------------------------


def test_ladders_are_half_decades_centred_on_the_width_heuristic():
    # full: 2e-5 x 4096 / 576 = 1.4e-4 at SmolLM2's width; LoRA 10x that at r=16
    assert lr.full_rate(576) == pytest.approx(1.42e-4, rel=0.01)
    assert lr.adapter_rate(576, 16) == pytest.approx(1.42e-3, rel=0.01)
    # alpha = 2r: 16 / r of the r=16 rate; rsLoRA / sqrt(r) on top
    assert lr.adapter_rate(576, 64) == pytest.approx(lr.adapter_rate(576, 16) / 4)
    assert lr.adapter_rate(576, 64, rslora=True) == pytest.approx(lr.adapter_rate(576, 64) / 8)
    # the centre's rung first, then above and below it
    assert lr.ladder(1.42e-3) == (1e-3, 3e-3, 3e-4)
    assert lr.ladder(1.42e-4) == (1e-4, 3e-4, 3e-5)
    assert lr.beyond((1e-3, 3e-3, 3e-4), 3e-3) == 1e-2
    assert lr.beyond((1e-3, 3e-3, 3e-4), 3e-4) == 1e-4
    assert lr.beyond((1e-3, 3e-3, 3e-4), 1e-3) is None


# --- the design ------------------------------------------------------------------------------


def test_design_on_tiny_llama_with_room_for_every_block(tiny_overrides):
    d, note = _design(tiny_overrides, Budget(usd=100.0))
    assert note is None  # a CPU keeps fp32
    labels = [b.label for b in d.blocks]
    assert labels[:2] == ["lora r16 all-linear", "full"]
    assert {"lora r4 all-linear", "lora r64 all-linear", "lora r16 attention"} <= set(labels)
    assert any("dora" in x for x in labels) and any("rslora" in x for x in labels)
    centre = d.blocks[0]
    assert centre.knobs == {"lora_r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
    # width 64: full 2e-5 x 64 = 1.3e-3 -> rung 1e-3; LoRA r=16 10x -> 1e-2
    assert d.blocks[1].rates == (1e-3, 3e-3, 3e-4)
    assert centre.rates == (1e-2, 3e-2, 3e-3)
    # launched a rung at a time: every block's centre rate before any block's second rate, so
    # the trials a short budget refuses (the last launched) never cost a whole axis
    points = d.points()
    assert len(points) == d.trials == sum(len(b.rates) for b in d.blocks)
    first_round = points[: len(d.blocks)]
    assert [(m, k, rate) for m, k, rate in first_round] == [
        (b.method, b.knobs, b.rates[0]) for b in d.blocks
    ]
    assert points[len(d.blocks)] == (centre.method, centre.knobs, centre.rates[1])
    assert sorted(map(repr, points)) == sorted(
        repr((b.method, b.knobs, r)) for b in d.blocks for r in b.rates
    )
    # QLoRA only where LoRA cannot fit: here it is left out, with why
    (qlora,) = [x for x in d.dropped if x.what == "qlora"]
    assert "lora fits hardware=cpu" in qlora.reason
    # ASHA's one rung at two thirds of training, its tokens from the data's real lengths
    assert d.rung_step == 2 and d.eval_every == 2  # 2 steps: ceil(2/3 x 2)
    # the rung's evaluation meets the grace period even when its batches are shorter than the
    # data's mean (just under the mean's count, the rung was met only at the last step)
    expected_at_rung = d.rung_step * d.profile.tokens_per_step(d.base)
    assert 0 < d.grace_period_tokens <= 0.5 * expected_at_rung
    assert d.profile.train_examples == 16 and d.profile.held_out == 8


def test_a_small_budget_keeps_the_centre_and_says_what_it_left_out(tiny_overrides):
    d, _ = _design(tiny_overrides, Budget(seconds=30.0))
    assert [b.label for b in d.blocks] == ["lora r16 all-linear"]
    reasons = {x.what: x.reason for x in d.dropped}
    assert "for the budget" in reasons["full"] and "18 s" in reasons["full"]  # 60% of 30 s
    assert any("small for even the centre block" in n for n in d.notes) or d.search_cost[1] <= 18


def test_qlora_is_searched_where_lora_cannot_fit():
    # the plan needs no weights: llama-2-7b on a 16 GB T4
    d, note = _design(["model=llama-2-7b", "hardware=t4"], Budget(usd=1000.0))
    assert note.startswith("train.precision=fp16")  # a T4 has no bf16
    assert d.base.train.precision == "fp16"
    assert {b.method for b in d.blocks} == {"qlora"}
    reasons = {x.what: x.reason for x in d.dropped}
    assert "142" in reasons["full"] or "GB per GPU" in reasons["full"]
    assert "qlora is searched instead" in reasons["lora r16 all-linear"]
    assert "hardware=t4 has 16 GB" in reasons["lora r16 all-linear"]
    # the stand-in tokenizer counted a hub model's data
    assert "stand-in" in d.profile.tokenizer
    # width 4096: LoRA r=16 at 10 x 2e-5 = 2e-4 -> rung 3e-4 (10^-3.5 rounds up)
    assert d.blocks[0].rates[0] in (1e-4, 3e-4)


def test_no_method_fitting_is_one_config_error():
    with pytest.raises(ConfigError, match="no method fits it"):
        _design(["model=llama-2-7b", "hardware=cpu", "hardware.memory_gb=1"], Budget(usd=10.0))


# --- the sweep file --------------------------------------------------------------------------


def test_the_written_sweep_loads_as_the_designed_trials(tiny_overrides):
    from ftsweep.sweep.space import expand

    d, _ = _design(tiny_overrides, Budget(usd=1.0, seconds=600.0))
    path, kept = write_sweep_file(d)
    assert kept is None and path == d.base.results_path / "auto" / "sweep.yaml"
    text = path.read_text()
    assert text.startswith("# @package _global_")
    assert "qlora: not searched" in text  # what was left out, and why, in the file itself
    # the same inputs write the same bytes; rewriting changes nothing
    again, _ = _design(tiny_overrides, Budget(usd=1.0, seconds=600.0))
    assert sweep_text(again) == text
    assert write_sweep_file(again) == (path, None)

    cfg = compose([f"sweep={path}"])
    assert cfg.sweep.name == "auto" and cfg.sweep.scheduler == "asha"
    assert cfg.sweep.budget_usd == pytest.approx(0.6) and cfg.sweep.time_budget_s == 360
    assert cfg.sweep.asha.grace_period_tokens == d.grace_period_tokens
    assert cfg.train.eval_every == d.eval_every
    assert cfg.results_path == d.base.results_path
    trials = [
        (
            s.config.method.name,
            s.config.method.learning_rate,
            getattr(s.config.method, "lora_r", None),
        )
        for s in expand(cfg)
    ]
    designed = [(m, rate, knobs.get("lora_r")) for m, knobs, rate in d.points()]
    assert trials == designed
    assert all(s.config.method.warmup_ratio == d.warmup_ratio for s in expand(cfg))
    # an edited file is kept aside, never lost
    path.write_text(text.replace("reduction_factor: 3", "reduction_factor: 4"))
    _, kept = write_sweep_file(again)
    assert kept is not None and "reduction_factor: 4" in kept.read_text()
    assert path.read_text() == text


# --- the stopping rule -----------------------------------------------------------------------


def _scores(values: list[float]) -> dict[str, float]:
    return {f"ex{i}": v for i, v in enumerate(values)}


def test_stopping_rule_on_paired_scores():
    n = 200
    strong = _scores([1.0] * 180 + [0.0] * 20)
    weak = _scores([1.0] * 120 + [0.0] * 80)
    # best clearly above the cheaper one: settled
    clear = decide(compare_scores([strong], [weak]), seeds=1)
    assert clear.settled and "excludes 0" in clear.reason
    # the same examples right and wrong but a handful: the interval includes 0, and is not yet
    # narrow enough to call them equal: another seed each
    close_a = _scores([1.0] * 100 + [0.0] * 100)
    close_b = _scores([1.0] * 96 + [0.0] * 4 + [1.0] * 4 + [0.0] * 96)
    comparison = compare_scores([close_a], [close_b])
    assert comparison.tie and comparison.paired
    assert not decide(comparison, seeds=2).settled
    assert decide(comparison, seeds=3).settled  # MAX_SEEDS each: tied within noise
    # identical on every example: equal within the margin, the cheaper is the choice
    same = decide(compare_scores([close_a, close_a], [close_a, close_a]), seeds=2)
    assert same.settled and "within" in same.reason
    # the best is itself the cheapest near-best
    assert decide(None, seeds=1).settled
    assert n == len(strong)


# --- the command's own arguments -------------------------------------------------------------


def test_budget_arguments_are_checked_in_one_line():
    assert parse_budget({"budget_usd": "2.5"}) == Budget(usd=2.5)
    assert parse_budget({"time_budget_s": "600"}) == Budget(seconds=600.0)
    with pytest.raises(ConfigError, match="budget_usd=DOLLARS or time_budget_s=SECONDS"):
        parse_budget({})
    with pytest.raises(ConfigError, match=r"budget_usd=ten: not a number"):
        parse_budget({"budget_usd": "ten"})
    with pytest.raises(ConfigError, match=r"time_budget_s=-5: must be above 0"):
        parse_budget({"time_budget_s": "-5"})
    with pytest.raises(ConfigError, match="ftsweep auto designs the methods and the sweep"):
        check_overrides(["model=tiny-llama", "method=full"])
    with pytest.raises(ConfigError, match="RESULTS/auto/sweep.yaml"):
        check_overrides(["sweep.seeds=3"])


def test_budget_gate_prices_a_trial_from_runs_that_ran_to_the_end(tiny_config):
    from ftsweep.sweep.budget import estimate_trial

    def run(run_id, cost, stop):
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, status="FINISHED"),
            data=SimpleNamespace(
                params={"method": "lora", "max_steps": "10"},
                metrics={"cost_usd": cost, "wall_time_s": cost * 1000},
                tags={"ftsweep.stop_reason": stop},
            ),
        )

    cfg = tiny_config("method=lora", "train.max_steps=10")
    # an early-stopped run paid for a part of its steps and none of its scoring
    runs = [run("a", 0.10, "completed"), run("b", 0.02, "early_stopped")]
    assert estimate_trial(cfg, runs).usd == pytest.approx(0.10)


# --- the stages' decisions, on hand-made records ----------------------------------------------


class _FakeSweep:
    """Stands in for the sweeps a stage would run: records a row per trial it is asked for,
    with the quality (and cost) its configuration is given, and notes each stage's config."""

    def __init__(self, quality_of):
        self.quality_of = quality_of  # (method, learning rate) -> (quality, cost) or None
        self.rows = []
        self.stages = []

    def record(self, spec):
        from ftsweep.report.runs import RunRow
        from ftsweep.tracking.record import TAG_TRIAL_ID, run_params

        m = spec.config.method
        given = self.quality_of(m.name, m.learning_rate)
        if given is None:
            return
        quality, cost = given
        self.rows.append(
            RunRow(
                run_id=f"run-{len(self.rows):04d}",
                name=spec.run_name,
                status="FINISHED",
                stop_reason="completed",
                params={k: str(v) for k, v in run_params(spec.config, resolve=False).items()},
                metrics={
                    "quality": quality,
                    "quality_ci_low": quality - 0.05,
                    "quality_ci_high": quality + 0.05,
                    "cost_usd": cost,
                    "wall_time_s": cost * 10000,
                },
                tags={TAG_TRIAL_ID: spec.trial_id},
            )
        )

    def run(self, cfg, stage, console, log, budget):
        from ftsweep.sweep.space import expand
        from ftsweep.tracking.record import TAG_TRIAL_ID

        self.stages.append((stage, cfg))
        done = {r.tags[TAG_TRIAL_ID] for r in self.rows}
        for spec in expand(cfg):
            if spec.trial_id not in done:
                self.record(spec)
        return True


def _stages(tiny_overrides, monkeypatch, quality_of):
    from rich.console import Console

    from ftsweep.auto import stages as stages_module

    d, _ = _design(tiny_overrides, Budget(usd=100.0))
    search = compose([f"sweep={write_sweep_file(d)[0]}"])
    fake = _FakeSweep(quality_of)
    monkeypatch.setattr(stages_module, "_run", fake.run)
    st = stages_module.Stages(d, search, Console(quiet=True), "cpu", search.results_path / ".s")
    monkeypatch.setattr(st, "rows", lambda: list(fake.rows))
    from ftsweep.sweep.space import expand

    for spec in expand(search):  # the search stage: every designed trial, seed 0
        fake.record(spec)
    return d, st, fake


def test_widen_adds_the_rung_past_an_edge_where_the_best_rate_sits(tiny_overrides, monkeypatch):
    # LoRA r=16 best at its top rate (3e-2), full fine-tuning at its bottom one (3e-4)
    best = {("lora", 3e-2): 0.9, ("full", 3e-4): 0.8}

    def quality(method, rate):
        return best.get((method, rate), 0.5), 0.001

    d, st, fake = _stages(tiny_overrides, monkeypatch, quality)
    assert st.widen()
    ((stage, cfg),) = fake.stages
    assert stage.startswith("widen")
    added = {(s.method, s.params["learning_rate"][0]) for s in cfg.sweep.space}
    assert ("lora", 1e-1) in added and ("full", 1e-4) in added
    assert cfg.sweep.scheduler == "none" and cfg.sweep.seeds == 1


def test_confirm_repeats_the_best_and_the_cheapest_near_best_until_settled(
    tiny_overrides, monkeypatch
):
    # full fine-tuning best (0.81) but dearer; LoRA r=16 (0.80) tied with it and 5x cheaper
    def quality(method, rate):
        if (method, rate) == ("full", 1e-3):
            return 0.81, 0.010
        if method == "lora" and rate == 1e-2:
            return 0.80, 0.002
        return 0.40, 0.002

    d, st, fake = _stages(tiny_overrides, monkeypatch, quality)
    st.confirm(d.budget)
    seeds = [cfg.sweep.seeds for stage, cfg in fake.stages]
    assert seeds == [2, 3]  # a round at 2 seeds, then one more each, MAX_SEEDS
    first = {(s.method, s.params["learning_rate"][0]) for s in fake.stages[0][1].sweep.space}
    assert {("full", 1e-3), ("lora", 1e-2)} <= first
    last = {(s.method, s.params["learning_rate"][0]) for s in fake.stages[-1][1].sweep.space}
    assert last == {("full", 1e-3), ("lora", 1e-2)}
    assert "after 3 seeds each" in st.log.decision


# --- end to end ------------------------------------------------------------------------------

E2E_BUDGET_S = 20.0  # seconds of trials: the gate refuses some of the designed ones


@pytest.mark.slow
def test_auto_on_tiny_llama_within_a_time_budget(tmp_path, output_when_done):
    """The whole command: design, search under ASHA, confirm, report, merge; then the same
    command again resumes a finished run without training anything."""
    from ftsweep.tracking.record import TAG_STOP_REASON
    from ftsweep.tracking.store import get_client

    args = [
        "model=tiny-llama",
        f"results_dir={tmp_path}",
        "train.max_steps=6",
        "train.log_every=2",
        "train.batch_size=4",
        "train.max_new_tokens=8",
        "train.forgetting_windows=4",
        "data.num_train=32",
        "data.num_eval=8",
        "data.num_test=8",
    ]
    script = (
        "import sys; from ftsweep.auto.command import cmd_auto; "
        f"sys.exit(cmd_auto({args!r}, {{'time_budget_s': '{E2E_BUDGET_S}'}}))"
    )

    def run_auto() -> str:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = output_when_done(proc, "ftsweep auto", timeout_s=300)
        assert proc.returncode == 0, out[-4000:]
        return out

    out = run_auto()
    assert "auto: search (ASHA)" in out
    assert "auto: confirm round 1" in out or "auto: confirm: not launched" in out
    assert "where the money went" in out
    auto = tmp_path / "auto"
    assert (auto / "sweep.yaml").is_file() and (auto / "report.md").is_file()
    assert "## Recommendation" in (auto / "report.md").read_text()

    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("auto")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    launched = [r for r in runs if r.data.tags.get(TAG_STOP_REASON) != "skipped_budget"]
    walls = [r.data.metrics["wall_time_s"] for r in launched]
    trial_walls = [
        r.data.metrics["wall_time_s"] for r in launched if r.data.params.get("method") != "none"
    ]
    # no launch took the sweep past its budget by more than one trial's length
    assert sum(walls) <= E2E_BUDGET_S + max(trial_walls)
    # and the budget did bind: some designed trial was refused, recorded with why
    skipped = [r for r in runs if r.data.tags.get(TAG_STOP_REASON) == "skipped_budget"]
    refused_confirm = "confirm: not launched: time budget" in out
    assert skipped or refused_confirm, out[-3000:]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(auto / "merged")
    assert model.config.hidden_size == 64

    # the same command again: every trial is recorded, nothing is trained twice
    again = run_auto()
    assert "merged:" in again and "already" in again
    assert len(client.search_runs([experiment.experiment_id], max_results=1000)) == len(runs)
