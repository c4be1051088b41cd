"""What each fine-tuning method changes: how the base is loaded and which weights train.

One training loop serves all three methods. `full` trains every weight (through DeepSpeed ZeRO
when `zero_stage` > 0); `lora` freezes the base and adds peft adapters; `qlora` is `lora` over a
base loaded in bitsandbytes 4-bit NF4.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ftsweep.config import CONF_DIR, Config, MethodConfig

TARGET_PRESETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def target_modules(method: MethodConfig) -> list[str]:
    if isinstance(method.target_modules, str):
        return TARGET_PRESETS[method.target_modules]
    return list(method.target_modules or [])


def load_base_model(cfg: Config, path: str, quantized: bool | None = None):
    """The base model as the method needs it: full precision, or 4-bit NF4 for QLoRA
    (`quantized` overrides the method's choice)."""
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[cfg.train.precision]
    kwargs = {
        "dtype": dtype,
        "trust_remote_code": cfg.model.trust_remote_code,
        # Weights load from safetensors only: a pickled checkpoint (.bin) can run code.
        "use_safetensors": True,
    }
    if cfg.method.name == "qlora" if quantized is None else quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def apply_method(model, method: MethodConfig):
    """Attach adapters for LoRA-type methods; full fine-tuning leaves every weight trainable."""
    if not method.is_lora:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method.name == "qlora":
        # Casts norms to fp32 and enables input grads, as the QLoRA recipe does; no checkpointing
        # here so step times stay comparable with LoRA.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=method.lora_r,
        lora_alpha=method.lora_alpha,
        lora_dropout=method.lora_dropout,
        target_modules=target_modules(method),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as their logical size."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        # bitsandbytes packs two 4-bit values per uint8 element.
        if param.dtype == torch.uint8 and hasattr(param, "quant_state"):
            n *= 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def deepspeed_config(method: MethodConfig) -> dict | None:
    """The ZeRO config for full fine-tuning, or None when DeepSpeed is not used."""
    if method.is_lora or not method.zero_stage:
        return None
    config = json.loads((CONF_DIR / "deepspeed" / f"zero{method.zero_stage}.json").read_text())
    if method.offload:
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
        if method.zero_stage == 3:
            config["zero_optimization"]["offload_param"] = {"device": "cpu", "pin_memory": False}
    return config


def save_artifact(model, out: Path, method: MethodConfig) -> Path:
    """What a run produces: the adapter for LoRA-type methods, the whole model for full."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    return out


def folder_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
