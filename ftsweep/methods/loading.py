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
    """The base model as the method trains it: its trainable weights in fp32 (or as DeepSpeed
    takes them), a frozen base in the compute dtype (`Method.weights_dtype`).

    `quantized=False` loads the base as published, unquantised whatever the method and in the
    compute dtype, since nothing trains it (the untrained base model's run only scores it).
    """
    from transformers import AutoModelForCausalLM

    compute = dtype_of(cfg.train.precision)
    spec = cfg.method.spec
    kwargs = {
        "dtype": compute if quantized is False else spec.weights_dtype(cfg.method, compute),
        "trust_remote_code": cfg.model.trust_remote_code,
        # Weights load from safetensors only: a pickled checkpoint (.bin) can run code.
        "use_safetensors": True,
    }
    if quantized is not False:
        kwargs |= spec.load_options(cfg.method, compute)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def build_model(cfg: Config, path: str):
    """The base loaded and prepared for training by the trial's method."""
    model = cfg.method.spec.prepare(load_base_model(cfg, path), cfg.method)
    if cfg.method.spec.deepspeed_config(cfg.method) is None:
        check_trainable_in_fp32(model)
    return model


def check_trainable_in_fp32(model) -> None:
    """Without DeepSpeed the trainable weights are the master weights: fp32, whatever the
    compute dtype. A 16-bit one would lose small updates to rounding, and fp16's GradScaler
    refuses it (DeepSpeed keeps its own fp32 copy, so it is not asked)."""
    import torch

    low = [n for n, p in model.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if low:
        raise TypeError(
            f"{len(low)} trainable parameters are not fp32 (first: {low[0]}); the method must "
            "load or create what trains in fp32 and leave 16-bit compute to autocast"
        )


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


def compute_precision(cfg: Config):
    """The trial's compute precision for what it measures outside the Trainer (generation,
    general-text losses): the autocast the Trainer trains under, so every method is scored
    and measured in the same compute dtype, before training and after."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = cfg.train.precision
    return torch.autocast(device, dtype=dtype_of(precision), enabled=precision != "fp32")
