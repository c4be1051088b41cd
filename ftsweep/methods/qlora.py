"""QLoRA: the base is loaded in bitsandbytes 4-bit NF4 and frozen; LoRA adapters train on top."""

from __future__ import annotations

from typing import ClassVar, Literal

from ftsweep.methods.lora import INITS, LoRA, LoraKnobs
from ftsweep.methods.registry import register_method
from ftsweep.planning.memory import NF4_BYTES, block_linear_params, outside_params


class QLoraKnobs(LoraKnobs):
    name: Literal["qlora"]

    # peft's PiSSA takes the SVD of a float weight and raises on a bitsandbytes 4-bit one; OLoRA
    # dequantises the NF4 weight, takes its QR and quantises the residual again; LoftQ starts
    # A and B from the quantisation error, read against the unquantised weights on disk.
    init_choices: ClassVar[dict[str, str]] = {
        **{k: v for k, v in INITS.items() if not k.startswith("pissa")},
        "loftq": "A and B from the SVD of the NF4 quantisation error (peft's "
        "replace_lora_weights_loftq); needs a CUDA GPU",
    }
    refused_inits: ClassVar[dict[str, str]] = {
        "pissa": "PiSSA needs the full-precision base: peft takes the SVD of a float weight and "
        "refuses a bitsandbytes 4-bit one (initialise with method=lora, or choose olora or loftq)",
    }


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

    def hardware_problem(self, knobs: QLoraKnobs, hardware) -> str | None:
        if knobs.init == "loftq" and hardware.device != "cuda":
            allowed = ", ".join(k for k in knobs.init_choices if k != "loftq")
            return (
                f"method.init=loftq: peft computes LoftQ on a CUDA GPU, and hardware={hardware.name} "
                f"is a {hardware.device} (allowed here: {allowed})"
            )
        return None

    def peft_init(self, knobs: QLoraKnobs) -> bool | str:
        # LoftQ replaces the default init once the adapters exist (`prepare`)
        return True if knobs.init == "loftq" else super().peft_init(knobs)

    def prepare(self, model, knobs: QLoraKnobs):
        from peft import prepare_model_for_kbit_training

        # Casts norms to fp32 and enables input grads, as the QLoRA recipe does; no checkpointing
        # here so step times stay comparable with LoRA.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = super().prepare(model, knobs)
        if knobs.init == "loftq":
            from peft import replace_lora_weights_loftq

            # peft's LoftQ for a model already in 4 bits: each adapter starts from the SVD of
            # W - dequantise(NF4(W)), W read from the checkpoint's safetensors.
            replace_lora_weights_loftq(model, model_path=model.get_base_model().name_or_path)
        return model

    def base_bytes(self, arch, precision: str) -> float:
        # projections in NF4; embeddings, head and norms upcast to fp32 by peft's
        # prepare_model_for_kbit_training
        return block_linear_params(arch) * NF4_BYTES + outside_params(arch) * 4

    def layout_label(self, zero_stage: int | None, offload: bool, optimizer: str = "adamw") -> str:
        return "NF4 base + adapters"

    def remedies(self, knobs: LoraKnobs, on_cpu: bool) -> list[str]:
        return []  # already the smallest base


register_method(QLoRA())
