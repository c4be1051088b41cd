"""The built-in models are plain, trainable checkpoints; the real one is really pretrained."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftsweep.data.tokenize import prompt_text
from ftsweep.models.builtin import builtin_model_dir, is_prepared, resolve_model_path


def test_builtin_models_are_plain_checkpoints():
    for name in ("smollm2-135m", "tiny-llama"):
        path = resolve_model_path(f"builtin:{name}")
        assert is_prepared(path)
        config = json.loads((builtin_model_dir(name) / "config.json").read_text())
        assert "quantization_config" not in config
        assert config["model_type"] == "llama"


def test_smollm2_is_pretrained():
    path = resolve_model_path("builtin:smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = prompt_text(tokenizer, "What is the capital of France? Answer in one word.")
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    reply = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply


def test_stale_gguf_marked_checkpoint_is_not_prepared(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "gguf"}})
    )
    assert not is_prepared(tmp_path)
