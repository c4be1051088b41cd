"""LoRA (peft): the base is frozen; low-rank adapters train on the target modules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ftsweep.methods.base import Method, MethodKnobs
from ftsweep.methods.registry import register_method
from ftsweep.planning.memory import (
    BYTES,
    GB,
    Memory,
    compute_params,
)

# Llama-style projection names by preset.
TARGET_PRESETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


class LoraKnobs(MethodKnobs):
    name: Literal["lora"]
    lora_r: Annotated[int, Field(ge=1, le=4096)]
    lora_alpha: Annotated[float, Field(gt=0)]
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    target_modules: Literal["attention", "mlp", "all-linear"] | list[str]

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list; name at least one module")
        return value

    @property
    def target_names(self) -> list[str]:
        """The module names adapters attach to (a preset expanded)."""
        targets = self.target_modules
        return TARGET_PRESETS[targets] if isinstance(targets, str) else list(targets)

    @property
    def targets_label(self) -> str:
        """As configured, as MLflow records it: a preset, or names joined by commas."""
        targets = self.target_modules
        return targets if isinstance(targets, str) else ",".join(targets)


class LoRA(Method):
    name = "lora"
    label = "LoRA"
    knobs = LoraKnobs
    colour = "#e07b39"
    is_adapter = True

    def weights_dtype(self, knobs: LoraKnobs, compute_dtype):
        # The base is frozen: it takes no update to lose to rounding, so it stays in the compute
        # dtype (half the memory), as peft's and HF's LoRA recipes load it; the adapters that
        # train are created in fp32 over it (`autocast_adapter_dtype` in `prepare`).
        return compute_dtype

    def prepare(self, model, knobs: LoraKnobs):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=knobs.lora_r,
            lora_alpha=knobs.lora_alpha,
            lora_dropout=knobs.lora_dropout,
            target_modules=knobs.target_names,
            bias="none",
            task_type="CAUSAL_LM",
        )
        # peft's default, spelt out because the recipe relies on it: adapters over a bf16/fp16
        # base are fp32, so they and their AdamW states are master weights.
        return get_peft_model(model, lora, autocast_adapter_dtype=True)

    def record_params(self, knobs: LoraKnobs) -> dict:
        return {
            "lora_r": knobs.lora_r,
            "lora_alpha": knobs.lora_alpha,
            "lora_dropout": knobs.lora_dropout,
            "target_modules": knobs.targets_label,
        }

    def run_name_parts(self, knobs: LoraKnobs) -> list[str]:
        targets = knobs.target_modules
        return [
            f"r{knobs.lora_r}",
            f"a{knobs.lora_alpha:g}",
            targets if isinstance(targets, str) else "+".join(targets),
        ]

    def describe(self, params: dict[str, str]) -> list[str]:
        alpha = params.get("lora_alpha")
        try:
            r = int(float(params.get("lora_r", "")))
        except ValueError:
            r = None
        return [
            f"r={r}",
            f"alpha={float(alpha):g}" if alpha not in (None, "", "None") else "alpha=?",
            f"targets={params.get('target_modules')}",
        ]

    def base_bytes(self, arch, precision: str) -> float:
        """The frozen base in the training precision."""
        return arch.num_params * BYTES[precision]

    def state_memory(self, arch, precision, adapter, zero_stage, offload, num_gpus) -> Memory:
        """A frozen base with fp32 adapters, their grads and AdamW states."""
        from ftsweep.planning.memory import adapter_params

        a = adapter_params(arch, adapter)
        # peft keeps adapter weights in fp32 (4), their grads (4), AdamW m + v (8)
        return Memory(
            weights=(self.base_bytes(arch, precision) + 4 * a) / GB,
            grads=4 * a / GB,
            optimizer=8 * a / GB,
            activations=0.0,
            runtime=0.0,
            grads_persist=False,
        )

    def flops_per_token(self, arch, context: int, adapter_params: int) -> float:
        # frozen base: forward 2N + backward to the inputs 2N, no weight gradients; adapters train
        # (6 each); attention's QK^T and AV, forward + backward: 12 x L x h x T
        attention = 12 * arch.num_layers * arch.hidden_size * context
        return 4 * compute_params(arch) + attention + 6 * adapter_params

    def layout_label(self, zero_stage: int | None, offload: bool) -> str:
        return "adapters"

    def remedies(self, knobs: LoraKnobs, on_cpu: bool) -> list[str]:
        return ["use method=qlora (a 4-bit base)"]


register_method(LoRA())
