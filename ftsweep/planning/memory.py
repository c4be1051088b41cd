"""A model's shape, counted: parameters per projection, adapters, activations, and what a
device holds at its peak (`Memory`). Small pure functions whose comments show the sum; the
method modules (`ftsweep.methods`) add their own weight, gradient and optimizer terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftsweep.config import ArchitectureConfig

GB = 1e9
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# NF4 with double quantisation: 4-bit weights (0.5 B) + an 8-bit absmax per 64-weight block
# + an fp32 second-level scale per 256 blocks = 0.5 + 1/64 + 4/16384 = 0.5159 bytes per weight.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


# Optimizer state bytes per trained parameter. AdamW: two fp32 moments, 4 + 4. bitsandbytes'
# 8-bit AdamW (paged or not): two uint8 moments, 1 + 1, and an fp32 absmax per 256-value block
# of each, 2 x 4 / 256: 2.03 bytes. It keeps 32-bit states for tensors under 4,096 values (norms:
# too few to count) and, under the HF Trainer, for nn.Embedding weights (`EMBEDDING_32BIT`).
OPTIMIZER_STATE_BYTES = {"adamw": 8.0, "adamw_8bit": 2 + 8 / 256, "paged_adamw_8bit": 2 + 8 / 256}
# What each step reads and writes of those states, per parameter: the two moments.
OPTIMIZER_STEP_STATE_BYTES = {"adamw": 16.0, "adamw_8bit": 4.0, "paged_adamw_8bit": 4.0}


@dataclass(frozen=True)
class Adapter:
    r: int
    targets: tuple[str, ...]  # module names
    dropout: float = 0.0
    label: str = ""  # as configured (a preset or names joined by commas), as MLflow records it
    dora: bool = False  # DoRA: a trained magnitude per output feature of each target
    init: str = "default"  # method.init: PiSSA's SVD and OLoRA's QR cost time at load


@dataclass(frozen=True)
class Memory:
    """What one device holds at its peak, in GB, by what holds it."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    runtime: float
    host: float = 0.0  # offloaded states in the machine's CPU memory, all its GPUs together
    # DeepSpeed keeps its gradient buffers between steps. torch frees grads at zero_grad, and
    # backward builds them as it frees activations, so the peak holds the larger of the two.
    grads_persist: bool = True

    @property
    def total(self) -> float:
        if self.grads_persist:
            held = self.grads + self.activations
        else:
            held = max(self.grads, self.activations)
        return self.weights + self.optimizer + held + self.runtime

    def describe(self) -> str:
        def part(name: str) -> str:
            return f"{name} {getattr(self, name):.1f}"

        held = (
            [part("grads"), part("activations")]
            if self.grads_persist
            else [f"max({part('grads')}, {part('activations')})"]
        )
        return " + ".join([part("weights"), part("optimizer"), *held, part("runtime")])


# --- the model's shape -----------------------------------------------------------------------


def kv_dim(arch: ArchitectureConfig) -> int:
    # grouped-query attention: k and v have num_kv_heads heads of hidden_size / num_heads
    return arch.num_kv_heads * (arch.hidden_size // arch.num_heads)


def linear_shapes(arch: ArchitectureConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection in one Llama-style decoder layer."""
    h, kv, i = arch.hidden_size, kv_dim(arch), arch.intermediate_size
    return {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


def block_linear_params(arch: ArchitectureConfig) -> int:
    # layers x (attention + MLP projections); what QLoRA quantises
    return arch.num_layers * sum(i * o for i, o in linear_shapes(arch).values())


def outside_params(arch: ArchitectureConfig) -> int:
    # everything not in a projection: embeddings, the head (unless tied), norms
    return arch.num_params - block_linear_params(arch)


def compute_params(arch: ArchitectureConfig) -> int:
    # projections + the head's vocab x hidden matmul; an embedding lookup costs no FLOPs
    return block_linear_params(arch) + arch.vocab_size * arch.hidden_size


def largest_layer_params(arch: ArchitectureConfig) -> int:
    # what ZeRO-3 gathers at once: the embedding (or head) matrix, or the widest projection
    return max(
        arch.vocab_size * arch.hidden_size, *(i * o for i, o in linear_shapes(arch).values())
    )


def adapter_params(arch: ArchitectureConfig, adapter: Adapter) -> int:
    # layers x each target's A (r x in) and B (out x r), and with DoRA its magnitude (out)
    shapes = linear_shapes(arch)
    low_rank = sum(adapter.r * (shapes[t][0] + shapes[t][1]) for t in adapter.targets)
    return arch.num_layers * low_rank + (
        dora_magnitude_params(arch, adapter) if adapter.dora else 0
    )


def dora_magnitude_params(arch: ArchitectureConfig, adapter: Adapter) -> int:
    # DoRA's lora_magnitude_vector: layers x each target's output features
    shapes = linear_shapes(arch)
    return arch.num_layers * sum(shapes[t][1] for t in adapter.targets)


def embedding_params(arch: ArchitectureConfig) -> int:
    # the input embedding (vocab x hidden); a tied head is the same tensor
    return arch.vocab_size * arch.hidden_size


def optimizer_state_bytes(arch: ArchitectureConfig, optimizer: str, flat: bool) -> float:
    """Full fine-tuning's optimizer states for every parameter, in bytes.

    The HF Trainer keeps an 8-bit optimizer's states for nn.Embedding weights in 32 bits (its
    `register_module_override`, as bitsandbytes advises for embeddings). Under ZeRO (`flat`)
    DeepSpeed hands the optimizer one flat fp32 partition, so every state is 8-bit: measured on
    tiny-llama, 3,219,456 uint8 states under ZeRO-2 against 65,536 without it."""
    per_param = OPTIMIZER_STATE_BYTES[optimizer]
    if flat or optimizer == "adamw":
        return arch.num_params * per_param
    embedding = embedding_params(arch)
    return (arch.num_params - embedding) * per_param + embedding * OPTIMIZER_STATE_BYTES["adamw"]


# --- memory ----------------------------------------------------------------------------------


def activation_gb(
    arch: ArchitectureConfig,
    tokens: int,
    act_bytes: int,
    adapter: Adapter | None = None,
    fp32_residual: bool = False,
) -> float:
    """Tensors the forward pass keeps for backward, for `tokens` tokens (batch x seq_len).

    `fp32_residual`: 16-bit compute autocast over fp32 norms and embeddings (full fine-tuning's
    fp32 master weights without DeepSpeed, `Method.fp32_residual`), so the residual stream stays
    fp32. Checked against what autograd saves in SmolLM2-135M (fp32, SDPA attention): 1.54 MB per
    token measured, 1.53 MB counted below without the backward's logit gradients.
    """
    h, kv, i = arch.hidden_size, kv_dim(arch), arch.intermediate_size
    # Per layer per token, in elements: two RMSNorms x (input, normalised, output) 6h, q h, k and v
    # 2kv, the attention output h, and the MLP's gate, act(gate), up and their product 4i.
    per_layer = (8 * h + 2 * kv + 4 * i) * act_bytes
    if act_bytes < 4:
        # 16-bit training: each RMSNorm keeps its input upcast to fp32 (2 more bytes x 2 norms)
        per_layer += 2 * h * (4 - act_bytes)
        if fp32_residual:
            # each norm keeps its fp32 input and its fp32 normalised output (8h bytes more),
            # and a layer one more 16-bit cast of a norm's output (2h): 10h more per layer,
            # as measured at widths 256, 512 and 576 (tests/test_precision.py checks it)
            per_layer += 10 * h
    if adapter is not None:
        # each adapter's r-wide middle, and with dropout a dropped copy of its input
        shapes = linear_shapes(arch)
        per_layer += act_bytes * sum(
            adapter.r + (shapes[t][0] if adapter.dropout else 0) for t in adapter.targets
        )
        if adapter.dora:
            # DoRA's output, (m / |W + BA| - 1) x base + m / |W + BA| x lora x scale, keeps the
            # base layer's output and the adapter's for the magnitude's gradient: 2 x out more
            per_layer += act_bytes * sum(2 * shapes[t][1] for t in adapter.targets)
    # Logits, per vocab entry at the start of backward: the logits (compute dtype), the fp32
    # log-softmax the loss keeps, the fp32 gradients of its output and input, and (16-bit only)
    # that gradient cast back: 4 + 4 + 4 + 4 = 16 bytes in fp32, 2 + 4 + 4 + 4 + 2 = 16 in bf16.
    logits = arch.vocab_size * 16
    return tokens * (arch.num_layers * per_layer + logits) / GB
