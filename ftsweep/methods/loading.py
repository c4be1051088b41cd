"""The model a trial trains: the base loaded as its method asks, then prepared by the method.

One training loop serves every method; the method decides how the base loads (full precision,
or 4-bit NF4 for QLoRA) and what trains (every weight, or adapters).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftsweep.config import Config


def dtype_of(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def load_base_model(cfg: Config, path: str, quantized: bool | None = None):
    """The base model as the method needs it; `quantized=False` loads it unquantised whatever
    the method (the untrained base model's run measures the base as published)."""
    from transformers import AutoModelForCausalLM

    dtype = dtype_of(cfg.train.precision)
    kwargs = {
        "dtype": dtype,
        "trust_remote_code": cfg.model.trust_remote_code,
        # Weights load from safetensors only: a pickled checkpoint (.bin) can run code.
        "use_safetensors": True,
    }
    if quantized is not False:
        kwargs |= cfg.method.spec.load_options(cfg.method, dtype)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def build_model(cfg: Config, path: str):
    """The base loaded and prepared for training by the trial's method."""
    return cfg.method.spec.prepare(load_base_model(cfg, path), cfg.method)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as their logical size."""
    import torch

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


def folder_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
