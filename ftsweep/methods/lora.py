"""LoRA (peft): the base is frozen; low-rank adapters train on the target modules."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

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


# How adapters start (peft's `init_lora_weights`), by the name method.init takes.
INITS = {
    "default": "B = 0, A Kaiming-uniform: the adapter starts as a no-op (peft's default)",
    "gaussian": "B = 0, A Gaussian scaled by the rank",
    "pissa": "A and B from the weight's r principal singular vectors (full SVD); the base keeps the residual",
    # any pissa_niter_K (K subspace iterations) is taken; 4 stands for them here
    "pissa_niter_4": "PiSSA by a fast randomised SVD with 4 (any pissa_niter_K: K) subspace iterations",
    "olora": "A and B from a QR decomposition of the weight; the base keeps the residual",
}
FAST_PISSA = re.compile(r"pissa_niter_(\d+)")
# Inits that move part of each base weight into the adapter: the base then holds a residual,
# and the saved adapter is converted to one for the original base (`LoRA.save_trained`).
RESIDUAL_INITS = ("pissa", "olora")
# DoRA's step time over plain LoRA's, the plan's DoRA speed factor (1 / this): measured on
# this 2-core CPU (2026-12-02), SmolLM2-135M, r = 16 on all linear layers, fp32, one padded batch
# of 4 x 145 tokens, forward + backward + AdamW: median 1.20 over 8 alternating rounds, range
# 1.10-1.27 (CPU time of one thread: the machine was shared). DoRA's extra work is partly per
# step (the norm of W + BA for every adapted weight) and partly per token (each output rescaled
# by m / |W + BA|), so the ratio moves with the batch; measured at this one, and on a GPU an
# assumption until measured runs calibrate it.
DORA_STEP_TIME_RATIO = 1.20
# Knobs that choose a LoRA variant; at their defaults they are plain LoRA and left out of the
# record (`MethodKnobs.changed`).
VARIANT_KNOBS = ("use_dora", "use_rslora", "init", "loraplus_lr_ratio")


def is_residual_init(init: str) -> bool:
    return init in RESIDUAL_INITS or bool(FAST_PISSA.fullmatch(init))


# A variant knob set away from its default, as a run name's word and as the report reads it.
VARIANT_WORD = {
    "use_dora": lambda v: "dora",
    "use_rslora": lambda v: "rslora",
    "init": lambda v: f"init-{v}",
    "loraplus_lr_ratio": lambda v: f"loraplus{float(v):g}",
}
VARIANT_TEXT = {
    "use_dora": lambda v: "DoRA",
    "use_rslora": lambda v: "rsLoRA",
    "init": lambda v: f"init={v}",
    "loraplus_lr_ratio": lambda v: f"LoRA+ B/A lr x{float(v):g}",
}


def recorded_variant(params: dict[str, str]) -> dict[str, str]:
    """The variant knobs a recorded run set (MLflow params, as text); a knob it did not record
    was at its default."""
    return {k: params[k] for k in VARIANT_KNOBS if params.get(k) not in (None, "", "None", "False")}


class LoraKnobs(MethodKnobs):
    name: Literal["lora"]
    lora_r: Annotated[int, Field(ge=1, le=4096)]
    lora_alpha: Annotated[float, Field(gt=0)]
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    target_modules: Literal["attention", "mlp", "all-linear"] | list[str]
    # DoRA (peft `use_dora`): each adapted weight trains as a magnitude (one value per output
    # feature) times a direction that LoRA updates.
    use_dora: bool = False
    # rsLoRA (peft `use_rslora`): the adapter's scale is alpha / sqrt(r) instead of alpha / r.
    use_rslora: bool = False
    # How the adapters start: one of INITS (this method's `inits()`).
    init: str = "default"
    # LoRA+: B's learning rate over A's (peft's `create_loraplus_optimizer`); null: one rate.
    loraplus_lr_ratio: Annotated[float, Field(ge=1)] | None = None

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list; name at least one module")
        return value

    # The inits this method takes (name -> what it does), and inits peft has that cannot run on
    # this method's base (name -> why), so a refused one is named with its reason.
    init_choices: ClassVar[dict[str, str]] = INITS
    refused_inits: ClassVar[dict[str, str]] = {
        "loftq": "LoftQ starts the adapters from the quantisation error of a 4-bit base: it is "
        "an init of method=qlora",
    }

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        allowed = ", ".join(cls.init_choices).replace(
            "pissa_niter_4", "pissa_niter_K (K: fast-SVD iterations, e.g. pissa_niter_4)"
        )
        family = "pissa" if FAST_PISSA.fullmatch(value) else value
        if family in cls.refused_inits:
            raise ValueError(f"{cls.refused_inits[family]} (allowed: {allowed})")
        fast = "pissa_niter_4" in cls.init_choices and FAST_PISSA.fullmatch(value)
        if not fast and value not in cls.init_choices:
            raise ValueError(f"not an init (allowed: {allowed})")
        return value

    @model_validator(mode="after")
    def _dora_fits_init(self):
        if self.use_dora and (is_residual_init(self.init) or self.init == "loftq"):
            why = (
                "peft's conversion of its adapter for the original base keeps A and B, not DoRA's magnitudes"
                if is_residual_init(self.init)
                else "peft's LoftQ sets A and B after DoRA has taken its magnitudes from the base"
            )
            raise ValueError(
                f"method.use_dora=true with method.init={self.init}: {why} "
                "(allowed with DoRA: default, gaussian)"
            )
        return self

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
    variant_knobs = VARIANT_KNOBS

    def weights_dtype(self, knobs: LoraKnobs, compute_dtype):
        # The base is frozen: it takes no update to lose to rounding, so it stays in the compute
        # dtype (half the memory), as peft's and HF's LoRA recipes load it; the adapters that
        # train are created in fp32 over it (`autocast_adapter_dtype` in `prepare`).
        return compute_dtype

    def peft_init(self, knobs: LoraKnobs) -> bool | str:
        """method.init as peft's `init_lora_weights` takes it."""
        return True if knobs.init == "default" else knobs.init

    def prepare(self, model, knobs: LoraKnobs):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=knobs.lora_r,
            lora_alpha=knobs.lora_alpha,
            lora_dropout=knobs.lora_dropout,
            target_modules=knobs.target_names,
            bias="none",
            task_type="CAUSAL_LM",
            use_dora=knobs.use_dora,
            use_rslora=knobs.use_rslora,
            init_lora_weights=self.peft_init(knobs),
        )
        # peft's default, spelt out because the recipe relies on it: adapters over a bf16/fp16
        # base are fp32, so they and their AdamW states are master weights.
        model = get_peft_model(model, lora, autocast_adapter_dtype=True)
        if is_residual_init(knobs.init):
            # The adapters as they started, to convert the trained ones for the original base.
            from peft import get_peft_model_state_dict

            model.initial_adapter_state = {
                k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()
            }
        return model

    def build_optimizer(self, model, knobs: LoraKnobs, args):
        if knobs.loraplus_lr_ratio is None:
            return None
        from peft.optimizers import create_loraplus_optimizer
        from transformers import Trainer

        # The optimizer class and settings the Trainer would use (AdamW, its betas and eps),
        # with B's parameter groups at loraplus_lr_ratio x the learning rate.
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        kwargs.pop("lr", None)
        return create_loraplus_optimizer(
            model,
            optimizer_cls,
            lr=args.learning_rate,
            loraplus_lr_ratio=knobs.loraplus_lr_ratio,
            loraplus_weight_decay=args.weight_decay,
            **kwargs,
        )

    def save_trained(self, trainer, knobs: LoraKnobs, out_dir: str) -> None:
        if not is_residual_init(knobs.init):
            return super().save_trained(trainer, knobs, out_dir)
        import tempfile
        from pathlib import Path

        from safetensors.torch import save_file

        # PiSSA and OLoRA trained on a residual base. peft saves the change they made,
        # A B - A0 B0, as a plain LoRA adapter of rank 2r that applies to the original base
        # (`path_initial_model_for_weight_conversion`), so merge and reuse need nothing else.
        model = trainer.model
        with tempfile.TemporaryDirectory(prefix="ftsweep-initial-") as tmp:
            initial = Path(tmp) / "initial"
            initial.mkdir()
            save_file(model.initial_adapter_state, str(initial / "adapter_model.safetensors"))
            model.save_pretrained(out_dir, path_initial_model_for_weight_conversion=str(initial))

    def record_params(self, knobs: LoraKnobs) -> dict:
        return {
            "lora_r": knobs.lora_r,
            "lora_alpha": knobs.lora_alpha,
            "lora_dropout": knobs.lora_dropout,
            "target_modules": knobs.targets_label,
            **knobs.changed(self.variant_knobs),
        }

    def run_name_parts(self, knobs: LoraKnobs) -> list[str]:
        targets = knobs.target_modules
        return [
            f"r{knobs.lora_r}",
            f"a{knobs.lora_alpha:g}",
            targets if isinstance(targets, str) else "+".join(targets),
            *(VARIANT_WORD[k](v) for k, v in knobs.changed(self.variant_knobs).items()),
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
            *(VARIANT_TEXT[k](v) for k, v in recorded_variant(params).items()),
        ]

    def base_bytes(self, arch, precision: str) -> float:
        """The frozen base in the training precision."""
        return arch.num_params * BYTES[precision]

    def state_memory(
        self, arch, precision, adapter, zero_stage, offload, num_gpus, optimizer="adamw"
    ) -> Memory:
        """A frozen base with fp32 adapters (DoRA's magnitudes among them), their grads and
        AdamW states."""
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

    def variant_speed(self, adapter) -> float:
        # DoRA's step against plain LoRA's, measured (see DORA_STEP_TIME_RATIO)
        return 1 / DORA_STEP_TIME_RATIO if adapter.dora else 1.0

    def setup_seconds(self, arch, adapter, hardware) -> float:
        from ftsweep.planning.cost import init_seconds

        return init_seconds(arch, adapter, hardware)

    def flops_per_token(self, arch, context: int, adapter_params: int) -> float:
        # frozen base: forward 2N + backward to the inputs 2N, no weight gradients; adapters train
        # (6 each); attention's QK^T and AV, forward + backward: 12 x L x h x T
        attention = 12 * arch.num_layers * arch.hidden_size * context
        return 4 * compute_params(arch) + attention + 6 * adapter_params

    def layout_label(self, zero_stage: int | None, offload: bool, optimizer: str = "adamw") -> str:
        return "adapters"

    def remedies(self, knobs: LoraKnobs, on_cpu: bool) -> list[str]:
        return ["use method=qlora (a 4-bit base)"]


register_method(LoRA())
