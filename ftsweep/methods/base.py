"""What every fine-tuning method is: its knobs (a pydantic model) and its behaviour (a `Method`).

A method module defines both and registers the `Method` once (`register_method`); the schema,
the trial, the plan and the report ask the registry and never compare method names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ftsweep.config import ArchitectureConfig
    from ftsweep.planning.memory import Adapter, Memory


class MethodKnobs(BaseModel):
    """The knobs every method has; a method's own knobs subclass this.

    Unknown keys are errors, so a knob given to a method it does not apply to is refused by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0

    # The registry entry of the method these knobs belong to, set by `register_method`.
    registered: ClassVar[Method | None] = None

    @property
    def spec(self) -> Method:
        """This method's registry entry."""
        if self.registered is None:
            raise LookupError(f"method {self.name!r} has knobs but was never registered")
        return self.registered

    @property
    def is_adapter(self) -> bool:
        return self.spec.is_adapter

    @property
    def quantized(self) -> bool:
        return self.spec.quantized

    @property
    def group_size(self) -> int:
        """Processes that train one trial: 1, or the data-parallel workers of a worker group."""
        return int(getattr(self, "num_workers", 1))

    def changed(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The knobs among `names` set away from their defaults, by name.

        What a method records of knobs added after trials were first named: a knob at its
        default is left out of the record, so the id of a trial that never set it does not
        change (`ftsweep.trial.identity`) and its runs group with the older ones.
        """
        fields = type(self).model_fields
        return {n: getattr(self, n) for n in names if getattr(self, n) != fields[n].default}


class Method:
    """One fine-tuning method: how its base loads, what trains, what it records and costs."""

    name: ClassVar[str]
    label: ClassVar[str]  # how people name it: "LoRA"
    knobs: ClassVar[type[MethodKnobs]]
    colour: ClassVar[str] = "#777777"  # in the report's plots
    # The run trains adapters on a frozen base: its artifact is the adapter, not a model.
    is_adapter: ClassVar[bool] = False
    # The frozen base is loaded quantised (bitsandbytes NF4).
    quantized: ClassVar[bool] = False
    # Knobs that choose a variant of the method (DoRA, an init, 8-bit AdamW): recorded only
    # where set away from their defaults (`MethodKnobs.changed`); the report compares each
    # one a sweep varied.
    variant_knobs: ClassVar[tuple[str, ...]] = ()

    # --- the trial ------------------------------------------------------------------------

    def load_options(self, knobs: MethodKnobs, dtype) -> dict[str, Any]:
        """Extra `from_pretrained` arguments for the base model; `dtype` is the compute dtype."""
        return {}

    def weights_dtype(self, knobs: MethodKnobs, compute_dtype):
        """The dtype the base's weights load in to train, given the compute dtype of
        train.precision.

        fp32 here: the weights that train are the optimizer's master copy (and its AdamW states
        follow their dtype). A bf16 weight cannot take an update below its 8-bit mantissa's
        resolution, so at full fine-tuning's small learning rates most steps round away, and
        fp16's GradScaler refuses to unscale fp16 gradients. Compute still runs in 16 bits: the
        Trainer's bf16=/fp16= flags autocast it (`ftsweep.trial.hf_trainer`).
        """
        import torch

        return torch.float32

    def prepare(self, model, knobs: MethodKnobs):
        """The model as it trains: which weights are trainable, adapters attached."""
        raise NotImplementedError

    def deepspeed_config(self, knobs: MethodKnobs) -> dict | None:
        """The DeepSpeed config the Trainer runs with, or None when DeepSpeed is not used."""
        return None

    def hardware_problem(self, knobs: MethodKnobs, hardware) -> str | None:
        """Why these knobs cannot run on this hardware (a `HardwareConfig`), or None."""
        return None

    def trainer_optimizer_name(self, knobs: MethodKnobs) -> str | None:
        """The HF Trainer's `optim` for this method, or None for the Trainer's default AdamW."""
        return None

    def build_optimizer(self, model, knobs: MethodKnobs, args):
        """An optimizer the method builds itself over the prepared `model` (`args`: the
        Trainer's TrainingArguments), or None to let the Trainer build its own."""
        return None

    def save_trained(self, trainer, knobs: MethodKnobs, out_dir: str) -> None:
        """Save what the run produces (the adapter, or the model) where `out_dir` says."""
        trainer.save_model(out_dir)

    def needs_gathered_weights(self, knobs: MethodKnobs) -> bool:
        """Whether the trained weights are partitioned across ranks (ZeRO-3) and must be
        reloaded from the saved checkpoint to generate."""
        return False

    # --- the record -----------------------------------------------------------------------

    def record_params(self, knobs: MethodKnobs) -> dict[str, Any]:
        """This method's knobs as MLflow params (part of the trial id)."""
        return {}

    def run_name_parts(self, knobs: MethodKnobs) -> list[str]:
        """Words of the run name after the method's name, e.g. ["r16", "a32", "all-linear"]."""
        return []

    def describe(self, params: dict[str, str]) -> list[str]:
        """The knobs that tell a recorded run of this method apart, from its MLflow params."""
        return []

    # --- the plan -------------------------------------------------------------------------

    def plan_layouts(
        self, on_cpu: bool, max_gpus: int, optimizer: str = "adamw"
    ) -> list[tuple[int, int | None, bool]]:
        """(GPUs, ZeRO stage, offload) layouts the plan estimates, with this optimizer."""
        return [(1, None, False)]

    def layout_label(self, zero_stage: int | None, offload: bool, optimizer: str = "adamw") -> str:
        return self.label

    def state_memory(
        self,
        arch: ArchitectureConfig,
        precision: str,
        adapter: Adapter,
        zero_stage: int | None,
        offload: bool,
        num_gpus: int,
        optimizer: str = "adamw",
    ) -> Memory:
        """Weights, gradients and optimizer states per device (activations: see the plan);
        `optimizer` is method.optimizer where the method has one."""
        raise NotImplementedError

    def plan_optimizers(self, configured: str) -> tuple[str, ...]:
        """The optimizers the plan estimates this method with: the configured one first."""
        return (configured,)

    def optimizer_step_bytes(self, optimizer: str) -> float:
        """Bytes the optimizer step reads and writes per trained parameter (its time term)."""
        from ftsweep.planning.cost import ADAM_BYTES_PER_PARAM

        return ADAM_BYTES_PER_PARAM

    def fp32_residual(self, zero_stage: int | None) -> bool:
        """Whether 16-bit compute is autocast over fp32 norms and embeddings, so the residual
        stream stays fp32 (the plan's activation term: `activation_gb`)."""
        return False

    def trains_adapter(self) -> bool:
        """Whether activations include the adapters' (the plan's activation term)."""
        return self.is_adapter

    def flops_per_token(self, arch: ArchitectureConfig, context: int, adapter_params: int) -> float:
        raise NotImplementedError

    # Share of the device's FLOP rate this method's step reaches relative to a plain one.
    speed_factor: ClassVar[float] = 1.0

    def variant_speed(self, adapter: Adapter) -> float:
        """The speed of this method's variant (DoRA's extra work per step) relative to the
        plain method: multiplies `speed_factor`."""
        return 1.0

    def setup_seconds(self, arch: ArchitectureConfig, adapter: Adapter, hardware) -> float:
        """One-off seconds before the first step that the variant adds (PiSSA's SVD at load)."""
        return 0.0

    def remedies(self, knobs: MethodKnobs, on_cpu: bool) -> list[str]:
        """What the user can change when a trial of this method does not fit its memory."""
        return []
