"""Full fine-tuning: every weight trains, through DeepSpeed ZeRO when `zero_stage` > 0, on one
process or a group of data-parallel workers (`num_workers`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ftsweep.methods.base import Method, MethodKnobs
from ftsweep.methods.registry import register_method
from ftsweep.planning.memory import (
    BYTES,
    GB,
    OPTIMIZER_STEP_STATE_BYTES,
    Memory,
    compute_params,
    largest_layer_params,
    optimizer_state_bytes,
)

# (ZeRO stage, offload) layouts the plan tries on GPUs; offloading to the CPU one already runs on
# changes nothing, so on CPU only the unoffloaded ones.
LAYOUTS = ((0, False), (2, False), (2, True), (3, False), (3, True))

# method.optimizer -> the HF Trainer's `optim` (None: its default torch AdamW) and how people
# name it. The 8-bit ones are bitsandbytes': AdamW's two moments kept as 8-bit blockwise-quantised
# states; the paged one also lets them move to CPU memory under pressure (CUDA's unified memory;
# on a CPU bitsandbytes runs it unpaged).
OPTIMIZERS = {
    "adamw": (None, "AdamW"),
    "adamw_8bit": ("adamw_8bit", "8-bit AdamW"),
    "paged_adamw_8bit": ("paged_adamw_8bit", "paged 8-bit AdamW"),
}


class FullKnobs(MethodKnobs):
    name: Literal["full"]
    # DeepSpeed ZeRO stage: 0 = plain single process / DDP, 2 = shard grads + optimizer, 3 = weights too.
    zero_stage: Literal[0, 2, 3] = 0
    offload: bool = False  # optimizer states (and ZeRO-3 params) in CPU memory
    # Data-parallel workers (Ray Train); 1 = this process.
    num_workers: Annotated[int, Field(ge=1, le=1024)] = 1
    # The optimizer: one of OPTIMIZERS.
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"] = "adamw"

    @model_validator(mode="after")
    def _optimizer_fits_offload(self):
        if self.optimizer != "adamw" and self.offload:
            raise ValueError(
                f"method.optimizer={self.optimizer} with method.offload=true: ZeRO-Offload keeps the "
                "optimizer states in CPU memory and steps them with DeepSpeed's own CPU Adam, not a "
                "bitsandbytes optimizer (allowed with offload: adamw)"
            )
        return self


class FullFineTuning(Method):
    name = "full"
    label = "Full fine-tuning"
    knobs = FullKnobs
    colour = "#3b6fb6"
    variant_knobs = ("optimizer",)

    def weights_dtype(self, knobs: FullKnobs, compute_dtype):
        if knobs.zero_stage:
            # DeepSpeed casts the module to its bf16/fp16 dtype itself and keeps the fp32 master
            # weights and AdamW states in its optimizer, copied from the cast weights: loading
            # fp32 would only double every rank's host memory while the model loads.
            return compute_dtype
        return super().weights_dtype(knobs, compute_dtype)

    def prepare(self, model, knobs: FullKnobs):
        model.requires_grad_(True)
        return model

    def deepspeed_config(self, knobs: FullKnobs) -> dict | None:
        if not knobs.zero_stage:
            return None
        from ftsweep.config.compose import compose_group

        # conf/deepspeed/zeroN.yaml (a user's own conf/deepspeed/ shadows it)
        config = compose_group("deepspeed", f"zero{knobs.zero_stage}")
        if knobs.offload:
            config["zero_optimization"]["offload_optimizer"] = {
                "device": "cpu",
                "pin_memory": False,
            }
            if knobs.zero_stage == 3:
                config["zero_optimization"]["offload_param"] = {
                    "device": "cpu",
                    "pin_memory": False,
                }
        return config

    def needs_gathered_weights(self, knobs: FullKnobs) -> bool:
        return knobs.zero_stage == 3

    def trainer_optimizer_name(self, knobs: FullKnobs) -> str | None:
        # Under ZeRO the Trainer's optimizer is DeepSpeed's client optimizer (conf/deepspeed/
        # sets no optimizer of its own), stepped on each rank's flat fp32 partition.
        return OPTIMIZERS[knobs.optimizer][0]

    def record_params(self, knobs: FullKnobs) -> dict:
        return {
            "zero_stage": knobs.zero_stage,
            "offload": knobs.offload,
            "num_workers": knobs.num_workers,
            # recorded where set away from AdamW (`MethodKnobs.changed`)
            **knobs.changed(self.variant_knobs),
        }

    def run_name_parts(self, knobs: FullKnobs) -> list[str]:
        parts = (
            [f"zero{knobs.zero_stage}{'-offload' if knobs.offload else ''}"]
            if knobs.zero_stage
            else []
        )
        if knobs.num_workers > 1:
            parts.append(f"x{knobs.num_workers}workers")
        if knobs.optimizer != "adamw":
            parts.append(knobs.optimizer)
        return parts

    def describe(self, params: dict[str, str]) -> list[str]:
        optimizer = params.get("optimizer", "adamw")
        words = (
            [OPTIMIZERS[optimizer][1]] if optimizer in OPTIMIZERS and optimizer != "adamw" else []
        )
        if params.get("zero_stage", "0") == "0":
            return words
        offload = "+offload" if params.get("offload") == "True" else ""
        return [f"ZeRO-{params['zero_stage']}{offload}", *words]

    def plan_layouts(
        self, on_cpu: bool, max_gpus: int, optimizer: str = "adamw"
    ) -> list[tuple[int, int | None, bool]]:
        return [
            (n, stage, offload)
            for stage, offload in LAYOUTS
            # offloading runs DeepSpeed's CPU Adam: an 8-bit optimizer is never offloaded
            if not (on_cpu and offload) and not (offload and optimizer != "adamw")
            for n in range(1, (1 if on_cpu else max_gpus) + 1)
        ]

    def layout_label(self, zero_stage: int | None, offload: bool, optimizer: str = "adamw") -> str:
        label = f"ZeRO-{zero_stage or 0}" + ("+offload" if offload else "")
        return label if optimizer == "adamw" else f"{label}, {OPTIMIZERS[optimizer][1]}"

    def plan_optimizers(self, configured: str) -> tuple[str, ...]:
        # the configured optimizer, and 8-bit AdamW beside AdamW: what its smaller states buy
        return (configured,) if configured != "adamw" else ("adamw", "adamw_8bit")

    def optimizer_step_bytes(self, optimizer: str) -> float:
        # AdamW's ~30 bytes a parameter (cost.ADAM_BYTES_PER_PARAM) less what 8-bit moments save
        from ftsweep.planning.cost import ADAM_BYTES_PER_PARAM

        saved = OPTIMIZER_STEP_STATE_BYTES["adamw"] - OPTIMIZER_STEP_STATE_BYTES[optimizer]
        return ADAM_BYTES_PER_PARAM - saved

    def state_memory(
        self, arch, precision, adapter, zero_stage, offload, num_gpus, optimizer="adamw"
    ) -> Memory:
        """Weights, gradients and optimizer states per GPU (activations: see the plan)."""
        p, n, w = arch.num_params, num_gpus, BYTES[precision]
        mixed = w < 4
        zero_stage = zero_stage or 0
        # AdamW m + v: 8 bytes per parameter; bitsandbytes' 8-bit AdamW: ~2 (memory.py)
        states = optimizer_state_bytes(arch, optimizer, flat=zero_stage > 0)
        if zero_stage == 0:
            # torch autocast, no DeepSpeed: fp32 weights (4) plus the 16-bit copies autocast keeps
            # for backward (2, mixed only); fp32 grads (4), and DDP's bucket copy of them on >1 GPU
            # (4); AdamW m + v (8). Mixed precision: 4 + 2 + 4 + 8 = 18 bytes per parameter.
            return Memory(
                weights=p * (4 + 2 * mixed) / GB,
                grads=p * (4 + 4 * (n > 1)) / GB,
                optimizer=states / GB,
                activations=0.0,
                runtime=0.0,
                grads_persist=False,
            )
        # DeepSpeed, as its estimate_zero2_model_states_mem_needs counts: params (w) and grads (w)
        # in the training precision, fp32 grads for the step (4, mixed only), fp32 master weights
        # (4) and AdamW m + v (8). ZeRO-2 shards all but the params: bf16 = 2 + 18 / n bytes each.
        grad_bytes = w + 4 * mixed
        state_bytes = 4 + states / p
        if offload:
            # ZeRO-Offload: fp32 grads, master weights and AdamW states live in host memory; the
            # GPU keeps the 16-bit params (ZeRO-2) or only the layer in use (ZeRO-3, params too).
            host = p * (4 + state_bytes + (w if zero_stage == 3 else 0)) / GB
            weights = p * w / GB if zero_stage == 2 else 4 * largest_layer_params(arch) / GB
            grads = p * w / n / GB if zero_stage == 2 else 0.0
            return Memory(weights, grads, 0.0, 0.0, 0.0, host=host)
        if zero_stage == 2:
            weights = p * w / GB
        else:
            # ZeRO-3 shards the params too, and gathers a layer at a time (DeepSpeed: 4 x its params)
            weights = (p * w / n + 4 * largest_layer_params(arch)) / GB
        return Memory(weights, p * grad_bytes / n / GB, p * state_bytes / n / GB, 0.0, 0.0)

    def fp32_residual(self, zero_stage: int | None) -> bool:
        # fp32 master weights under autocast, unless DeepSpeed casts the module to 16 bits
        return not zero_stage

    def flops_per_token(self, arch, context: int, adapter_params: int) -> float:
        # forward 2N + backward 4N (input and weight gradients), plus attention's QK^T and AV,
        # forward + backward, as in nanoGPT's estimate_mfu: 12 x L x h x T
        return 6 * compute_params(arch) + 12 * arch.num_layers * arch.hidden_size * context

    def remedies(self, knobs: FullKnobs, on_cpu: bool) -> list[str]:
        out = []
        if on_cpu and knobs.num_workers > 1:
            out.append("use fewer method.num_workers (each holds a copy on this machine)")
        if not on_cpu:
            out.append("shard with method.zero_stage=3 and more method.num_workers")
            if not knobs.offload:
                out.append("set method.offload=true (states in CPU memory)")
        out.append("use method=lora or method=qlora")
        return out


register_method(FullFineTuning())
