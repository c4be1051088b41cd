"""Forgetting: loss on general text the base model handles, measured the same way before and after."""

from __future__ import annotations

import math

import pytest
import torch

from ftsweep.data.forgetting import general_text, general_text_ids, general_text_loss


def _load(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftsweep.models.builtin import resolve_model_path

    path = resolve_model_path(f"builtin:{name}")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def smollm2():
    return _load("smollm2-135m")


def test_general_text_is_english_prose_from_the_standard_library():
    text = general_text()
    assert text.startswith("Objects, values and types")
    assert "Exceptions are a means of breaking out of the normal flow of control" in text
    assert "****" not in text and "\n\n" in text
    assert text == general_text()


def test_the_pretrained_model_handles_the_text_and_a_random_one_does_not(smollm2):
    model, tokenizer = smollm2
    random_model, _ = _load("tiny-llama")
    pretrained = general_text_loss(model, tokenizer)
    untrained = general_text_loss(random_model, tokenizer)
    assert pretrained < 4.0  # ~2.8 nats a token for SmolLM2-135M
    assert untrained > 0.9 * math.log(len(tokenizer))  # a random model is near uniform


def test_loss_matches_the_model_own_loss_on_one_window():
    model, tokenizer = _load("tiny-llama")
    ids = torch.tensor([general_text_ids(tokenizer, 64)])
    expected = model(input_ids=ids, labels=ids).loss.item()
    assert general_text_loss(model, tokenizer, max_tokens=64, window=64) == pytest.approx(
        expected, rel=1e-5
    )
    # Windows that do not divide the tokens evenly are padded, and padding is not scored.
    several = general_text_loss(model, tokenizer, max_tokens=150, window=64)
    assert math.isfinite(several) and several != pytest.approx(expected)


def test_measuring_leaves_the_model_as_it_was():
    model, tokenizer = _load("tiny-llama")
    model.train()
    first = general_text_loss(model, tokenizer, max_tokens=64)
    assert model.training
    assert general_text_loss(model, tokenizer, max_tokens=64) == first


def test_fresh_lora_adapters_forget_nothing_and_damage_shows_as_positive_forgetting(smollm2):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = smollm2
    before = general_text_loss(model, tokenizer, max_tokens=128)
    lora = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    )
    try:
        # B starts at zero: the adapted model is the base model until it trains.
        assert general_text_loss(lora, tokenizer, max_tokens=128) == pytest.approx(before, abs=1e-4)
        with torch.no_grad():
            for name, param in lora.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        forgetting = general_text_loss(lora, tokenizer, max_tokens=128) - before
        assert forgetting > 0.05
    finally:
        lora.unload()
