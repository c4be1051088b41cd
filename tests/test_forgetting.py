"""Forgetting: loss on shipped general text, measured the same way before and after, with a
paired interval over windows; QLoRA measured against the unquantised base."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math

import numpy as np
import pytest
import torch

from ftsweep.data.corpus import (
    WINDOW,
    corpus_fingerprint,
    corpus_sources,
    corpus_windows,
    fingerprint,
)
from ftsweep.data.forgetting import WindowLosses, forgetting_metrics, window_losses
from ftsweep.data.intervals import ratio_of_sums

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _path(name: str) -> str:
    from ftsweep.models.builtin import resolve_model_path

    return resolve_model_path(f"builtin:{name}")


def _load(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _path(name)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_path("smollm2-135m"))


@pytest.fixture(scope="module")
def tiny():
    return _load("tiny-llama")


# --- the corpus ------------------------------------------------------------------------------


def test_corpus_has_8000_smollm2_tokens_from_at_least_three_sources(tokenizer):
    sources = corpus_sources()
    counts = {
        s.name: len(tokenizer(s.text, add_special_tokens=False)["input_ids"]) for s in sources
    }
    assert len(counts) >= 3
    assert min(counts.values()) >= 400, counts  # each source has a say
    assert sum(counts.values()) >= 8000, counts
    windows = corpus_windows(tokenizer)
    assert max(len(w) for w in windows) == WINDOW
    assert sum(len(w) - 1 for w in windows) >= 8000  # tokens a window predicts
    # Each text is cut on its own: at most one short window per text.
    assert sum(len(w) < WINDOW for w in windows) <= len(sources)


def test_corpus_is_prose_that_names_its_source_and_licence():
    for source in corpus_sources():
        assert "Source:" in source.header and "Licence:" in source.header, source.name
        assert ">>>" not in source.text and "::=" not in source.text, source.name
        assert not any(line.startswith("    ") for line in source.text.splitlines())
        assert "\n\n" in source.text and source.text == source.text.strip()


def test_the_fingerprint_names_the_text_and_changes_with_it():
    sources = corpus_sources()
    assert corpus_fingerprint() == fingerprint(sources) and len(corpus_fingerprint()) == 12
    edited = (dataclasses.replace(sources[0], text=sources[0].text + " One more word."),)
    assert fingerprint(edited + sources[1:]) != corpus_fingerprint()
    relabelled = (dataclasses.replace(sources[0], header="another header"),)
    assert fingerprint(relabelled + sources[1:]) == corpus_fingerprint()  # the text decides


def test_every_run_records_the_corpus_it_was_measured_on(tiny_config):
    from ftsweep.tracking.record import run_params
    from ftsweep.trial.baseline import baseline_params

    cfg = tiny_config()
    assert run_params(cfg)["forgetting_corpus"] == corpus_fingerprint()
    assert baseline_params(cfg)["forgetting_corpus"] == corpus_fingerprint()


# --- measuring -------------------------------------------------------------------------------


def test_window_losses_match_the_model_own_loss_and_padding_is_not_scored(tiny, tokenizer):
    model, _ = tiny
    windows = corpus_windows(tokenizer)
    one = windows[0][:64]
    expected = model(input_ids=torch.tensor([one]), labels=torch.tensor([one])).loss.item()
    alone = window_losses(model, tokenizer, windows=[one])
    assert alone.tokens.tolist() == [63]
    assert alone.loss == pytest.approx(expected, rel=1e-5)
    # Scored beside longer windows (so padded), a window's sum is what it is alone.
    batched = window_losses(model, tokenizer, windows=[windows[1], one, windows[2][:100]])
    assert batched.tokens.tolist() == [WINDOW - 1, 63, 99]
    assert batched.sums[1] == pytest.approx(alone.sums[0], rel=1e-4)


def test_measuring_leaves_the_model_as_it_was(tiny, tokenizer):
    model, _ = tiny
    model.train()
    windows = corpus_windows(tokenizer)[:2]
    first = window_losses(model, tokenizer, windows=windows)
    assert model.training
    assert np.array_equal(window_losses(model, tokenizer, windows=windows).sums, first.sums)


def test_the_pretrained_model_handles_the_text_and_a_random_one_does_not(tiny, tokenizer):
    smollm2, _ = _load("smollm2-135m")
    windows = corpus_windows(tokenizer)[::12]  # a few windows from across the corpus
    assert window_losses(smollm2, tokenizer, windows=windows).loss < 4.0  # ~3.0 on all of it
    untrained = window_losses(tiny[0], tokenizer, windows=windows).loss
    assert untrained > 0.9 * math.log(len(tokenizer))  # a random model is near uniform


# --- the interval ----------------------------------------------------------------------------


def test_the_interval_contains_the_estimate_and_narrows_with_more_windows():
    rng = np.random.default_rng(1)
    tokens = np.full(400, 255.0)
    sums = tokens * rng.normal(3.0, 0.3, size=400)  # per-window mean loss ~3 +- 0.3 nats
    few, many = ratio_of_sums(sums[:25], tokens[:25]), ratio_of_sums(sums, tokens)
    for interval in (few, many):
        assert interval.low < interval.estimate < interval.high
    assert many.estimate == pytest.approx(sums.sum() / tokens.sum())
    assert many.n == 400 and few.n == 25
    assert many.width < 0.5 * few.width  # sqrt(400 / 25) = 4 times narrower, near enough
    with pytest.raises(ValueError, match="positive"):
        ratio_of_sums([1.0], [0.0])


def test_forgetting_is_paired_over_the_same_windows():
    before = WindowLosses(np.array([300.0, 900.0, 600.0]), np.array([100.0, 300.0, 200.0]))
    shifted = WindowLosses(before.sums + 0.05 * before.tokens, before.tokens)
    metrics = forgetting_metrics(shifted, before)
    # Every window got worse by 0.05 nats a token: the difference is exact, whatever is drawn.
    assert metrics["forgetting"] == pytest.approx(0.05)
    assert metrics["forgetting_ci_low"] == pytest.approx(0.05)
    assert metrics["forgetting_ci_high"] == pytest.approx(0.05)
    assert metrics["forgetting_tokens"] == 600
    assert metrics["general_text_loss_base"] == pytest.approx(3.0)
    other = WindowLosses(before.sums[:2], before.tokens[:2])
    with pytest.raises(ValueError, match="different windows"):
        shifted.minus(other)


def test_a_model_equal_to_the_base_forgets_nothing_and_damage_forgets_beyond_noise(tiny, tokenizer):
    from peft import LoraConfig, get_peft_model

    base, _ = tiny
    before = window_losses(base, tokenizer)
    assert before.total_tokens >= 8000
    loss = before.interval()
    assert loss.estimate == pytest.approx(before.loss) and loss.n == len(before.tokens)
    assert loss.low < before.loss < loss.high
    # Fresh LoRA adapters (B = 0) leave the model as it was.
    same = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    unchanged = forgetting_metrics(window_losses(same, tokenizer), before)
    assert unchanged["forgetting"] == pytest.approx(0.0, abs=1e-5)
    assert unchanged["forgetting_ci_low"] <= 0.0 <= unchanged["forgetting_ci_high"]
    damaged = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in damaged.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    hurt = forgetting_metrics(window_losses(damaged, tokenizer), before)
    assert hurt["forgetting"] > 0.05
    assert 0.0 < hurt["forgetting_ci_low"] <= hurt["forgetting"] <= hurt["forgetting_ci_high"]


# --- QLoRA: against the unquantised base -----------------------------------------------------


def test_qlora_forgetting_is_against_the_unquantised_base_and_records_what_quantising_cost(
    tiny_config, tokenizer
):
    from ftsweep.methods.loading import load_base_model
    from ftsweep.trial.run import run_trial

    # the whole corpus, as every run outside the tests measures it
    cfg = tiny_config(
        "method=qlora", "sweep.name=qlora-forgetting", "train.forgetting_windows=null"
    )
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    m = result.metrics
    unquantised = window_losses(
        load_base_model(cfg, _path("tiny-llama"), quantized=False), tokenizer
    )
    assert m["general_text_loss_base"] == pytest.approx(unquantised.loss, rel=1e-6)
    assert m["forgetting"] == pytest.approx(m["general_text_loss"] - unquantised.loss, abs=1e-6)
    assert m["forgetting_tokens"] == unquantised.total_tokens >= 8000
    # NF4 moved the loss: quantising is measured, and not as the unquantised base.
    assert abs(m["quantization_loss"]) > 1e-4
    assert m["quantization_loss_ci_low"] <= m["quantization_loss"] <= m["quantization_loss_ci_high"]


def test_lora_forgetting_is_against_the_same_base_with_no_quantisation_cost(
    tiny_config, tiny, tokenizer
):
    from ftsweep.trial.run import run_trial

    cfg = tiny_config("method=lora", "sweep.name=lora-forgetting", "train.forgetting_windows=null")
    m = run_trial(cfg).metrics
    assert m["general_text_loss_base"] == pytest.approx(window_losses(tiny[0], tokenizer).loss)
    assert m["quantization_loss"] == 0.0
    assert m["forgetting"] == pytest.approx(
        m["general_text_loss"] - m["general_text_loss_base"], abs=1e-6
    )
    assert m["forgetting_ci_low"] <= m["forgetting"] <= m["forgetting_ci_high"]


# --- the report ------------------------------------------------------------------------------


def _row(method, quality, forgetting, r=None, seed=0):
    from ftsweep.report.runs import RunRow

    params = {"method": method, "learning_rate": "0.0001", "seed": str(seed), "hardware": "cpu"}
    if r:
        params |= {"lora_r": str(r), "lora_alpha": str(2.0 * r), "target_modules": "all-linear"}
    metrics = {
        "quality": quality,
        "quality_ci_low": quality - 0.05,
        "quality_ci_high": quality + 0.05,
        "cost_usd": 0.01,
        "wall_time_s": 60.0,
    }
    if forgetting is not None:
        metrics |= {
            "general_text_loss": 3.0 + forgetting,
            "forgetting_tokens": 9260.0,
            "forgetting": forgetting,
            "forgetting_ci_low": forgetting - 0.01,
            "forgetting_ci_high": forgetting + 0.01,
        }
    if method == "qlora":
        metrics |= {
            "quantization_loss": 0.2,
            "quantization_loss_ci_low": 0.18,
            "quantization_loss_ci_high": 0.22,
        }
    name = f"{method} r{r} s{seed}"
    return RunRow(name, name, "FINISHED", "completed", params, metrics)


def _analysis(rows):
    from ftsweep.report.analysis import analyse_rows

    return analyse_rows(
        rows, experiment="fk", tracking_uri="", target=None, today=dt.date(2026, 1, 1)
    )


def test_the_report_plots_lift_against_forgetting_per_method_and_rank(tmp_path):
    from ftsweep.report.forgetting import lift_and_forgetting_points
    from ftsweep.report.plots import draw_all, plots_to_draw
    from ftsweep.report.sections_quality import lift_and_forgetting

    rows = [
        _row("none", 0.40, 0.0),
        _row("full", 0.80, 0.30),
        _row("lora", 0.70, 0.05, r=8),
        _row("lora", 0.60, 0.09, r=8, seed=1),
        _row("lora", 0.75, 0.10, r=64),
        _row("qlora", 0.72, 0.25, r=8),
    ]
    a = _analysis(rows)
    points = lift_and_forgetting_points(a)
    assert [(p.method, p.rank) for p in points] == [
        ("full", None),
        ("lora", 8),
        ("lora", 64),
        ("qlora", 8),
    ]
    lora8 = points[1]
    assert lora8.group.n == 2  # two seeds of one configuration
    assert lora8.forgetting.value == pytest.approx(0.07)  # their mean
    assert lora8.lift.value == pytest.approx(0.65 - 0.40)
    assert "lift_vs_forgetting" in plots_to_draw(a)
    drawn = draw_all(a, tmp_path / "plots")
    png = drawn["lift_vs_forgetting"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    section = lift_and_forgetting(a, {"lift_vs_forgetting": "plots/lift_vs_forgetting.png"})
    text = "\n".join(str(b) for b in section.blocks)
    assert "+0.300 [+0.290, +0.310]" in text  # full fine-tuning's forgetting with its interval
    assert "over 9,260 tokens" in text
    assert "QLoRA quantises the base" in text and "+0.200 [+0.180, +0.220]" in text
    assert "plots/lift_vs_forgetting.png" in text


def test_without_a_base_model_or_recorded_forgetting_there_is_no_plot():
    from ftsweep.report.plots import plots_to_draw

    no_base = _analysis([_row("full", 0.8, 0.3), _row("lora", 0.7, 0.05, r=8)])
    assert "lift_vs_forgetting" not in plots_to_draw(no_base)
    old_runs = _analysis([_row("none", 0.4, 0.0), _row("lora", 0.7, None, r=8)])
    assert "lift_vs_forgetting" not in plots_to_draw(old_runs)


def test_fewer_windows_sample_every_source(tokenizer):
    from ftsweep.data.corpus import corpus_windows

    every = corpus_windows(tokenizer)
    four = corpus_windows(tokenizer, limit=4)
    assert len(four) == 4 and all(w in every for w in four)
    # spread over the corpus, not its first text only
    assert every.index(four[-1]) >= len(every) * 3 // 4 - 1
    assert corpus_windows(tokenizer, limit=10_000) == every
