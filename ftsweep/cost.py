"""What a run costs: dollars from device time, and memory and time from a model's shape.

Small pure functions whose comments show the sum. Prices live in conf/hardware/*.yaml, each with
its source and the date it was read; model shapes in conf/model/*.yaml (`architecture`). The
plan (ftsweep/plan.py) puts these together per method and GPU layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftsweep.config import CONF_DIR, ArchitectureConfig, ConfigError, HardwareConfig

GB = 1e9
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# NF4 with double quantisation: 4-bit weights (0.5 B) + an 8-bit absmax per 64-weight block
# + an fp32 second-level scale per 256 blocks = 0.5 + 1/64 + 4/16384 = 0.5159 bytes per weight.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# What a device holds besides the tensors counted here. CUDA: the context and cuBLAS workspaces
# (which torch.cuda.max_memory_allocated does not count). CPU: the resident process, 0.69 GB at a
# SmolLM2-135M trial's start (Python, torch, transformers, peft, mlflow, tokenizer, data) + ~0.3 GB
# that training adds (Trainer, allocator slack): 1.0 GB, fitted to six measured peak RSS.
GPU_RUNTIME_GB = 1.0
CPU_RUNTIME_GB = 1.0
# QLoRA dequantises each NF4 weight before its matmul, forward and backward: a common ~30% loss
# of throughput against 16-bit LoRA. An assumption until measured runs calibrate it.
QLORA_SPEED = 0.7
# Data-parallel scaling per extra GPU: ZeRO-3 all-gathers the weights for every pass, 1.5x the
# communication of ZeRO-0/2. Assumptions, as above.
DP_EFFICIENCY = {0: 0.9, 2: 0.9, 3: 0.8}
# ZeRO-Offload runs AdamW on the host: ~0.5e9 parameters/s per GPU's share (Qwen2.5-3B on 2x A100
# with DeepSpeed's CPU Adam stepped in 2.4-3.1 s), with 16-bit tensors over PCIe 4.0 at ~16 GB/s.
HOST_ADAM_PARAMS_PER_S = 0.5e9
PCIE_BYTES_PER_S = 16e9

TARGET_PRESETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@dataclass(frozen=True)
class Adapter:
    r: int
    targets: tuple[str, ...]  # module names
    dropout: float = 0.0
    label: str = ""  # as configured (a preset or names joined by commas), as MLflow records it


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
    # layers x each target's A (r x in) and B (out x r)
    shapes = linear_shapes(arch)
    return arch.num_layers * sum(adapter.r * (shapes[t][0] + shapes[t][1]) for t in adapter.targets)


# --- memory ----------------------------------------------------------------------------------


def activation_gb(
    arch: ArchitectureConfig, tokens: int, act_bytes: int, adapter: Adapter | None = None
) -> float:
    """Tensors the forward pass keeps for backward, for `tokens` tokens (batch x seq_len).

    Checked against what autograd saves in SmolLM2-135M (fp32, SDPA attention): 1.54 MB per token
    measured, 1.53 MB counted below without the backward's logit gradients.
    """
    h, kv, i = arch.hidden_size, kv_dim(arch), arch.intermediate_size
    # Per layer per token, in elements: two RMSNorms x (input, normalised, output) 6h, q h, k and v
    # 2kv, the attention output h, and the MLP's gate, act(gate), up and their product 4i.
    per_layer = (8 * h + 2 * kv + 4 * i) * act_bytes
    if act_bytes < 4:
        # 16-bit training: each RMSNorm keeps its input upcast to fp32 (2 more bytes x 2 norms)
        per_layer += 2 * h * (4 - act_bytes)
    if adapter is not None:
        # each adapter's r-wide middle, and with dropout a dropped copy of its input
        shapes = linear_shapes(arch)
        per_layer += act_bytes * sum(
            adapter.r + (shapes[t][0] if adapter.dropout else 0) for t in adapter.targets
        )
    # Logits, per vocab entry at the start of backward: the logits (compute dtype), the fp32
    # log-softmax the loss keeps, the fp32 gradients of its output and input, and (16-bit only)
    # that gradient cast back: 4 + 4 + 4 + 4 = 16 bytes in fp32, 2 + 4 + 4 + 4 + 2 = 16 in bf16.
    logits = arch.vocab_size * 16
    return tokens * (arch.num_layers * per_layer + logits) / GB


def full_memory(
    arch: ArchitectureConfig, precision: str, zero_stage: int, offload: bool, num_gpus: int
) -> Memory:
    """Weights, gradients and AdamW states per GPU for full fine-tuning (activations: see plan)."""
    p, n, w = arch.num_params, num_gpus, BYTES[precision]
    mixed = w < 4
    if zero_stage == 0:
        # torch autocast, no DeepSpeed: fp32 weights (4) plus the 16-bit copies autocast keeps for
        # backward (2, mixed only); fp32 grads (4), and DDP's bucket copy of them on >1 GPU (4);
        # AdamW m + v (8). Mixed precision: 4 + 2 + 4 + 8 = 18 bytes per parameter.
        return Memory(
            weights=p * (4 + 2 * mixed) / GB,
            grads=p * (4 + 4 * (n > 1)) / GB,
            optimizer=p * 8 / GB,
            activations=0.0,
            runtime=0.0,
            grads_persist=False,
        )
    # DeepSpeed, as its estimate_zero2_model_states_mem_needs counts: params (w) and grads (w) in
    # the training precision, fp32 grads for the step (4, mixed only), fp32 master weights (4) and
    # AdamW m + v (8). ZeRO-2 shards all but the params: bf16 = 2 + 18 / n bytes per parameter.
    grad_bytes = w + 4 * mixed
    state_bytes = 4 + 8
    if offload:
        # ZeRO-Offload: fp32 grads, master weights and AdamW states live in host memory; the GPU
        # keeps the 16-bit params (ZeRO-2) or only the layer in use (ZeRO-3, params offloaded too).
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


def adapter_memory(
    arch: ArchitectureConfig, method: str, precision: str, adapter: Adapter
) -> Memory:
    """A frozen base (16-bit, or NF4 for QLoRA) with fp32 adapters, their grads and AdamW states."""
    a = adapter_params(arch, adapter)
    if method == "qlora":
        # projections in NF4; embeddings, head and norms upcast to fp32 by peft's
        # prepare_model_for_kbit_training
        base = block_linear_params(arch) * NF4_BYTES + outside_params(arch) * 4
    else:
        base = arch.num_params * BYTES[precision]
    # peft keeps adapter weights in fp32 (4), their grads (4), AdamW m + v (8)
    return Memory(
        weights=(base + 4 * a) / GB,
        grads=4 * a / GB,
        optimizer=8 * a / GB,
        activations=0.0,
        runtime=0.0,
        grads_persist=False,
    )


# --- time ------------------------------------------------------------------------------------


def flops_per_token(
    arch: ArchitectureConfig, method: str, context: int, adapter_count: int = 0
) -> float:
    n = compute_params(arch)
    # attention's QK^T and AV, forward + backward, as in nanoGPT's estimate_mfu: 12 x L x h x T
    attention = 12 * arch.num_layers * arch.hidden_size * context
    if method == "full":
        # forward 2N + backward 4N (input and weight gradients)
        return 6 * n + attention
    # frozen base: forward 2N + backward to the inputs 2N, no weight gradients; adapters train (6 each)
    return 4 * n + attention + 6 * adapter_count


def compute_tokens_per_s(
    flops: float, hardware: HardwareConfig, method: str, num_gpus: int, zero_stage: int | None
) -> float:
    # devices x scaling x mfu x peak FLOP/s / FLOPs per token
    scaling = DP_EFFICIENCY[zero_stage or 0] if num_gpus > 1 else 1.0
    speed = num_gpus * scaling * hardware.mfu * hardware.peak_tflops * 1e12 / flops
    return speed * (QLORA_SPEED if method == "qlora" else 1.0)


def offload_seconds_per_step(
    arch: ArchitectureConfig, precision: str, zero_stage: int, num_gpus: int, micro_batches: int
) -> float:
    share = arch.num_params / num_gpus
    w = BYTES[precision]
    # host AdamW over this GPU's share + its 16-bit grads down and params back up over PCIe
    seconds = share / HOST_ADAM_PARAMS_PER_S + 2 * w * share / PCIE_BYTES_PER_S
    if zero_stage == 3:
        # offloaded params come up from the host for forward and again for backward, every micro-batch
        seconds += micro_batches * 2 * w * share / PCIE_BYTES_PER_S
    return seconds


# --- dollars ---------------------------------------------------------------------------------


def cost_usd(devices: int, hours: float, price_per_device_hour: float) -> float:
    # devices x hours x price per device-hour
    return devices * hours * price_per_device_hour


def run_cost_usd(wall_time_s: float, hardware: HardwareConfig) -> float:
    return cost_usd(
        hardware.devices_per_trial, wall_time_s / 3600.0, hardware.price_per_device_hour
    )


def experiments_per_dollar(cost: float) -> float:
    return 1.0 / cost if cost > 0 else float("inf")


def hardware_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "hardware").glob("*.yaml"))


def load_hardware(name: str) -> HardwareConfig:
    """conf/hardware/NAME.yaml, validated; a missing or bad file is a ConfigError."""
    import yaml
    from pydantic import ValidationError

    path = CONF_DIR / "hardware" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            f"hardware={name}: no such hardware (allowed: {', '.join(hardware_names())})"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    # YAML reads an unquoted 2026-11-28 as a date; the schema keeps it as text.
    raw["price_date"] = str(raw.get("price_date", ""))
    try:
        return HardwareConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"conf/hardware/{name}.yaml: {problems}") from None


def hardware_catalog() -> dict[str, HardwareConfig]:
    """Every hardware option in conf/hardware, by name."""
    return {name: load_hardware(name) for name in hardware_names()}
