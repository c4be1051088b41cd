"""One optimizer step of each method changes the weights it should, and only those."""

from __future__ import annotations

import pytest
import torch

from ftsweep.methods.loading import build_model, count_parameters
from ftsweep.models.builtin import resolve_model_path


def _one_step(model) -> None:
    torch.manual_seed(0)
    batch = torch.randint(0, 1000, (2, 12))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _load(tiny_config, method: str, *extra: str):
    cfg = tiny_config(f"method={method}", *extra)
    return cfg, build_model(cfg, resolve_model_path(cfg.model.name_or_path))


def test_lora_trains_adapters_only_and_leaves_base_bit_identical(tiny_config):
    _, model = _load(tiny_config, "lora", "method.target_modules=attention")
    before = _snapshot(model)
    _one_step(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "a LoRA step changed nothing"
    assert all("lora_" in n for n in changed), (
        f"non-adapter weights changed: {changed - {n for n in changed if 'lora_' in n}}"
    )
    # lora_B starts at zero, so after one step every adapter's B has moved.
    assert any("lora_B" in n for n in changed)
    # Only attention projections carry adapters under the "attention" preset.
    adapted = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_" in n
    }
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_qlora_base_is_4bit_and_frozen(tiny_config):
    import bitsandbytes as bnb

    _, model = _load(tiny_config, "qlora")
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.dtype == torch.uint8  # packed NF4
    packed_before = {
        n: p.detach().clone() for n, p in model.named_parameters() if p.dtype == torch.uint8
    }
    assert packed_before
    before = _snapshot(model)
    _one_step(model)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name]), f"{name} changed in a QLoRA step"
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if "lora_B" in n)


def test_full_trains_every_weight(tiny_config):
    _, model = _load(tiny_config, "full")
    trainable, total = count_parameters(model)
    assert trainable == total
    before = _snapshot(model)
    _one_step(model)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"full fine-tuning left weights unchanged: {unchanged}"


def test_trainable_counts_follow_rank(tiny_config):
    counts = {}
    for r in (4, 8):
        _, model = _load(tiny_config, "lora", f"method.lora_r={r}")
        counts[r] = count_parameters(model)[0]
    assert counts[8] == 2 * counts[4]


@pytest.mark.parametrize(("preset", "expected"), [("attention", 4), ("mlp", 3), ("all-linear", 7)])
def test_target_presets(tiny_config, preset, expected):
    cfg = tiny_config("method=lora", f"method.target_modules={preset}")
    assert len(cfg.method.target_names) == expected


def _ds(method):
    return method.spec.deepspeed_config(method)


def test_deepspeed_config_only_for_full_with_zero(tiny_config):
    assert _ds(tiny_config("method=lora").method) is None
    assert _ds(tiny_config("method=full", "method.zero_stage=0").method) is None
    zero3 = _ds(tiny_config("method=full", "method.zero_stage=3", "method.offload=true").method)
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
