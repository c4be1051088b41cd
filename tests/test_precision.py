"""One mixed-precision recipe for every method: what trains (and its AdamW states) is fp32, the
compute is autocast to bf16/fp16 by the Trainer's flags, DeepSpeed's sections say the same."""

from __future__ import annotations

import pytest
import torch

from ftsweep.methods.loading import build_model
from ftsweep.models.builtin import resolve_model_path

# Every method and layout whose arguments differ: plain torch, DeepSpeed ZeRO-2/3, adapters.
LAYOUTS = {
    "full": ["method=full", "method.zero_stage=0"],
    "full-zero2": ["method=full", "method.zero_stage=2"],
    "full-zero3": ["method=full", "method.zero_stage=3"],
    "lora": ["method=lora"],
    "qlora": ["method=qlora"],
}


def _build(tiny_config, *overrides: str):
    cfg = tiny_config(*overrides)
    return cfg, build_model(cfg, resolve_model_path(cfg.model.name_or_path))


def _train(cfg, model, workdir):
    """A few steps through the trial's own Trainer and arguments; returns the trainer and the
    dtypes the first attention projection computed in."""
    from ftsweep.data.tokenize import PadCollator
    from ftsweep.trial.hf_trainer import trainer_class, training_arguments
    from ftsweep.trial.recipe import prepare_inputs

    inputs = prepare_inputs(cfg)
    computed: set[torch.dtype] = set()
    layer = model.get_decoder().layers[0].self_attn.q_proj
    layer.register_forward_hook(lambda _m, _i, out: computed.add(out.dtype))
    trainer = trainer_class()(
        model=model,
        args=training_arguments(cfg, str(workdir), show_progress=False),
        train_dataset=inputs.train_set,
        data_collator=PadCollator(inputs.tokenizer.pad_token_id),
    )
    trainer.train()
    return trainer, computed


def _trainable_dtypes(model) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.requires_grad}


def test_full_fine_tuning_at_bf16_trains_fp32_master_weights_that_all_move(tiny_config, tmp_path):
    cfg, model = _build(
        tiny_config,
        *LAYOUTS["full"],
        "train.precision=bf16",
        "method.learning_rate=2e-5",
        "train.max_steps=3",
    )
    assert _trainable_dtypes(model) == {torch.float32}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer, computed = _train(cfg, model, tmp_path)
    assert computed == {torch.bfloat16}, "the Trainer's bf16 flag did not autocast the compute"
    moments = {
        v.dtype for state in trainer.optimizer.state.values() for v in state.values() if v.dim()
    }
    assert moments == {torch.float32}
    changed = sum(int((p != before[n]).sum()) for n, p in model.named_parameters())
    total = sum(p.numel() for p in model.parameters())
    # Loaded in bf16 (before the recipe), 30% of the weights changed in 5 such steps.
    assert changed / total > 0.99, f"only {changed / total:.1%} of the weights changed"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lora_trains_fp32_adapters_over_a_base_in_the_compute_dtype(tiny_config, precision):
    _, model = _build(tiny_config, *LAYOUTS["lora"], f"train.precision={precision}")
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert _trainable_dtypes(model) == {torch.float32}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {compute}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_qlora_computes_in_the_precision_and_trains_fp32_adapters(tiny_config, precision):
    _, model = _build(tiny_config, *LAYOUTS["qlora"], f"train.precision={precision}")
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert _trainable_dtypes(model) == {torch.float32}
    q_proj = model.get_decoder().layers[0].self_attn.q_proj.base_layer
    assert q_proj.compute_dtype == compute


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_trainer_and_deepspeed_flags_follow_the_precision(tiny_config, tmp_path, layout, precision):
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from ftsweep.trial.environment import trial_environment
    from ftsweep.trial.hf_trainer import training_arguments

    cfg = tiny_config(*LAYOUTS[layout], f"train.precision={precision}")
    # transformers sets ACCELERATE_USE_DEEPSPEED and a global DeepSpeed config: left to no
    # later test.
    with trial_environment(deepspeed=True):
        args = training_arguments(cfg, str(tmp_path), show_progress=False)
        unset_hf_deepspeed_config()
    assert (args.bf16, args.fp16) == (precision == "bf16", precision == "fp16")
    if layout.startswith("full-zero"):
        assert args.deepspeed["bf16"]["enabled"] is (precision == "bf16")
        assert args.deepspeed["fp16"]["enabled"] is (precision == "fp16")
    else:
        assert args.deepspeed is None


def test_deepspeed_sections_keep_their_other_settings():
    from ftsweep.trial.hf_trainer import with_precision

    config = {"fp16": {"enabled": "auto", "loss_scale": 0}, "zero_optimization": {"stage": 2}}
    out = with_precision(config, "fp16")
    assert out["fp16"] == {"enabled": True, "loss_scale": 0}
    assert out["bf16"] == {"enabled": False}
    assert out["zero_optimization"] == {"stage": 2}


def test_a_16_bit_trainable_weight_is_refused_before_training():
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftsweep.methods.loading import check_trainable_in_fp32

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    check_trainable_in_fp32(LlamaForCausalLM(config))
    with pytest.raises(TypeError, match="trainable parameters are not fp32"):
        check_trainable_in_fp32(LlamaForCausalLM(config).to(torch.float16))


def _saved_bytes_per_token_per_layer(hidden: int, weights: torch.dtype, autocast: bool) -> float:
    """What autograd keeps for backward per layer and token in a random Llama, less the 16-bit
    weight copies autocast keeps (the plan counts those with the weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def saved(layers: int) -> tuple[int, int]:
        config = LlamaConfig(
            vocab_size=1000,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        model = LlamaForCausalLM(config).to(weights).train()
        batch = torch.randint(0, 1000, (2, 64))
        storages: dict[int, int] = {}

        def keep(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(input_ids=batch, labels=batch)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        layer_weights = sum(
            p.numel() for n, p in model.named_parameters() if "layers.0." in n and "norm" not in n
        )
        return sum(b for ptr, b in storages.items() if ptr not in params), layer_weights

    (two, per_layer_weights), (four, _) = saved(2), saved(4)
    copies = 2 * per_layer_weights * 2 if autocast else 0  # two more layers' bf16 weights
    return (four - two - copies) / 2 / 128


@pytest.mark.parametrize("hidden", [128, 256])
def test_activation_term_matches_what_autocast_over_fp32_weights_keeps(hidden):
    from ftsweep.config import ArchitectureConfig
    from ftsweep.planning.memory import GB, activation_gb

    def planned(layers: int, fp32_residual: bool) -> float:
        arch = ArchitectureConfig(
            num_params=1,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=2 * hidden,
            vocab_size=1000,
        )
        return activation_gb(arch, 1, 2, fp32_residual=fp32_residual) * GB

    for weights, autocast, fp32_residual in (
        (torch.float32, True, True),  # full fine-tuning without DeepSpeed
        (torch.bfloat16, False, False),  # a 16-bit module (DeepSpeed, a LoRA base)
    ):
        measured = _saved_bytes_per_token_per_layer(hidden, weights, autocast)
        counted = planned(4, fp32_residual) - planned(3, fp32_residual)
        assert counted == pytest.approx(measured, rel=0.01)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 mixed precision needs CUDA")
@pytest.mark.parametrize("layout", ["full", "lora", "qlora"])
def test_fp16_trains_every_method_on_cuda(tiny_config, tmp_path, layout):
    # As on a T4: the GradScaler refuses to unscale fp16 gradients, so this fails if any
    # trainable weight is fp16.
    cfg, model = _build(tiny_config, *LAYOUTS[layout], "train.precision=fp16")
    trainer, computed = _train(cfg, model, tmp_path)
    assert computed == {torch.float16}
    assert _trainable_dtypes(model) == {torch.float32}
    assert all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad)
    assert trainer.state.log_history, "no step was logged"
