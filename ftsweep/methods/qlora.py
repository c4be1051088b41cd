"""QLoRA: the base is loaded in bitsandbytes 4-bit NF4 and frozen; LoRA adapters train on top."""

from __future__ import annotations

from typing import ClassVar, Literal

from ftsweep.methods.lora import LoRA, LoraKnobs
from ftsweep.methods.registry import register_method
from ftsweep.planning.memory import NF4_BYTES, block_linear_params, outside_params


class QLoraKnobs(LoraKnobs):
    name: Literal["qlora"]


class QLoRA(LoRA):
    """LoRA over a base loaded in 4-bit NF4, as torchtune's QLoRA is its LoRA with one flag."""

    name = "qlora"
    label = "QLoRA"
    knobs = QLoraKnobs
    colour = "#3a9e5c"
    quantized = True
    # QLoRA dequantises each NF4 weight before its matmul, forward and backward: a common ~30%
    # loss of throughput against 16-bit LoRA. An assumption until measured runs calibrate it.
    speed_factor: ClassVar[float] = 0.7

    def load_options(self, knobs: LoraKnobs, dtype) -> dict:
        import torch
        from transformers import BitsAndBytesConfig

        # The NF4 weights dequantise to the compute dtype of train.precision for each matmul;
        # the modules left unquantised load in it too (LoRA's `weights_dtype`) until `prepare`
        # upcasts them to fp32.
        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
            ),
            "device_map": {"": 0} if torch.cuda.is_available() else {"": "cpu"},
        }

    def prepare(self, model, knobs: LoraKnobs):
        from peft import prepare_model_for_kbit_training

        # Casts norms to fp32 and enables input grads, as the QLoRA recipe does; no checkpointing
        # here so step times stay comparable with LoRA.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().prepare(model, knobs)

    def base_bytes(self, arch, precision: str) -> float:
        # projections in NF4; embeddings, head and norms upcast to fp32 by peft's
        # prepare_model_for_kbit_training
        return block_linear_params(arch) * NF4_BYTES + outside_params(arch) * 4

    def layout_label(self, zero_stage: int | None, offload: bool) -> str:
        return "NF4 base + adapters"

    def remedies(self, knobs: LoraKnobs, on_cpu: bool) -> list[str]:
        return []  # already the smallest base


register_method(QLoRA())
