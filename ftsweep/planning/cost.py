"""What a run costs: dollars from device time, and time from a model's FLOPs.

Small pure functions whose comments show the sum, and the hardware catalog: prices live in
conf/hardware/*.yaml (read through Hydra, as every config is), each with its source and the date
it was read; model shapes in conf/model/*.yaml (`architecture`). The plan
(`ftsweep.planning.plan`) puts these together per method and GPU layout.
"""

from __future__ import annotations

import os

from ftsweep.config import ArchitectureConfig, Config, ConfigError, HardwareConfig
from ftsweep.config.compose import compose_group, group_options
from ftsweep.planning.memory import BYTES, linear_shapes

# What a device holds besides the tensors counted here. CUDA: the context and cuBLAS workspaces
# (which torch.cuda.max_memory_allocated does not count). CPU: the resident process, 0.69 GB at a
# SmolLM2-135M trial's start (Python, torch, transformers, peft, mlflow, tokenizer, data) + ~0.3 GB
# that training adds (Trainer, allocator slack): 1.0 GB, fitted to six measured peak RSS.
GPU_RUNTIME_GB = 1.0
CPU_RUNTIME_GB = 1.0
# AdamW's step touches, per trained parameter: the fp32 master weight, both moments (read and
# written), the fp32 gradient (read) and the 16-bit copy (written): ~30 bytes, memory-bound.
ADAM_BYTES_PER_PARAM = 30
# ZeRO-Offload runs AdamW on the host: ~0.5e9 parameters/s per GPU's share (Qwen2.5-3B on 2x A100
# with DeepSpeed's CPU Adam stepped in 2.4-3.1 s), with 16-bit tensors over PCIe 4.0 at ~16 GB/s.
HOST_ADAM_PARAMS_PER_S = 0.5e9
PCIE_BYTES_PER_S = 16e9
# How fast the one-off decompositions of method.init run (`init_seconds`), in the FLOPs that
# `init_flops` counts. CPU: a share of its peak, measured on this 2-core machine (one thread,
# CPU time, SmolLM2-135M's 576x576, 1536x576 and 576x192 weights against a 1024^3 fp32 matrix
# product on the same thread): LAPACK's SVD 0.84-0.93, its QR 0.50-0.65. GPU: an assumption,
# not measured here: cuSOLVER's fp32 SVD of 4,096-wide matrices at ~1 TFLOP/s, which puts a
# full-SVD PiSSA of a 7-8B model at minutes and pissa_niter_16 at seconds, as peft's docs say.
CPU_DECOMPOSITION_SHARE = {"svd": 0.9, "qr": 0.6}
GPU_DECOMPOSITION_FLOPS = 1e12


# --- time ------------------------------------------------------------------------------------


def compute_tokens_per_s(
    flops: float, hardware: HardwareConfig, speed_factor: float, num_gpus: int
) -> float:
    # devices x mfu x peak FLOP/s / FLOPs per token x the method's own speed factor; what the
    # devices spend talking to each other is added per step (collective_seconds_per_step)
    speed = num_gpus * hardware.mfu * hardware.peak_tflops * 1e12 / flops
    return speed * speed_factor


def collective_bytes_per_step(
    total_params: int,
    trained_params: int,
    precision: str,
    zero_stage: int,
    num_gpus: int,
    micro_batches: int,
) -> float:
    """Bytes each device sends per optimizer step in ZeRO's collectives (ZeRO paper, Rajbhandari
    et al. 2020, section 7). Ring algorithms: a reduce-scatter or an all-gather of a tensor of
    B bytes sends (n-1)/n x B from each of n devices."""
    if num_gpus == 1:
        return 0.0
    ring = (num_gpus - 1) / num_gpus
    w = BYTES[precision]
    grads, params = trained_params * w, total_params * w
    if zero_stage == 3:
        # parameters all-gathered for forward and again for backward, gradients reduce-scattered:
        # every micro-batch (3x the model, where DDP moves 2x)
        return micro_batches * ring * (2 * params + grads)
    if zero_stage in (1, 2):
        # gradients reduce-scattered every micro-batch; the updated shards all-gathered once
        return ring * (micro_batches + 1) * grads
    # ZeRO-0 (plain data parallel): one all-reduce of the gradients per step, no_sync between
    return 2 * ring * grads


def collective_seconds_per_step(bytes_per_device: float, hardware: HardwareConfig) -> float:
    # bytes each device sends / its link's bandwidth, with no overlap with compute (DeepSpeed
    # overlaps part of it with backward: an upper bound)
    return bytes_per_device / (hardware.interconnect_gb_s * 1e9)


def optimizer_seconds_per_step(
    trained_params_per_device: float,
    hardware: HardwareConfig,
    bytes_per_param: float = ADAM_BYTES_PER_PARAM,
) -> float:
    # the states of the parameters this device updates, read and written once (8-bit AdamW's
    # moments move a quarter of the bytes: `Method.optimizer_step_bytes`)
    return trained_params_per_device * bytes_per_param / (hardware.memory_bandwidth_gb_s * 1e9)


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


def init_flops(arch: ArchitectureConfig, adapter) -> float:
    """FLOPs of the decomposition method.init takes of every adapted weight at load (peft's
    PiSSA and OLoRA); 0 for inits that only draw random numbers.

    For one m x n weight (m >= n), as Golub and Van Loan count them: a thin SVD with both factors
    (PiSSA) 14mn^2 + 8n^3; a randomised one with K subspace iterations (pissa_niter_K, torch's
    svd_lowrank at rank r) a product with A or A^T per pass, 2 + 2K of them: 4mnr(K + 1); a
    Householder QR with its Q formed (OLoRA) 4mn^2 - 4n^3/3. LoftQ takes a thin SVD of each
    weight's quantisation error, as PiSSA does of the weight."""
    init = adapter.init
    fast = init.startswith("pissa_niter_")
    if init not in ("pissa", "olora", "loftq") and not fast:
        return 0.0
    total = 0.0
    for target in adapter.targets:
        m, n = max(linear_shapes(arch)[target]), min(linear_shapes(arch)[target])
        if init in ("pissa", "loftq"):
            total += 14 * m * n**2 + 8 * n**3
        elif fast:
            total += 4 * m * n * adapter.r * (int(init.removeprefix("pissa_niter_")) + 1)
        else:
            total += 4 * m * n**2 - 4 * n**3 / 3
    return arch.num_layers * total


def init_seconds(arch: ArchitectureConfig, adapter, hardware: HardwareConfig) -> float:
    """Seconds of method.init's decompositions at load (`init_flops`): the randomised SVD is
    matrix products, at the device's mfu; a full SVD or a QR at CPU_DECOMPOSITION_SHARE of a
    CPU's peak, or GPU_DECOMPOSITION_FLOPS on a GPU."""
    flops = init_flops(arch, adapter)
    if not flops:
        return 0.0
    peak = hardware.peak_tflops * 1e12
    if adapter.init.startswith("pissa_niter_"):
        return flops / (hardware.mfu * peak)
    if hardware.device != "cpu":
        return flops / GPU_DECOMPOSITION_FLOPS
    kind = "qr" if adapter.init == "olora" else "svd"
    return flops / (CPU_DECOMPOSITION_SHARE[kind] * peak)


# --- dollars ---------------------------------------------------------------------------------


def cost_usd(devices: int, hours: float, price_per_device_hour: float) -> float:
    # devices x hours x price per device-hour
    return devices * hours * price_per_device_hour


def run_cost_usd(wall_time_s: float, hardware: HardwareConfig) -> float:
    return cost_usd(
        hardware.devices_per_trial, wall_time_s / 3600.0, hardware.price_per_device_hour
    )


def trial_cost_usd(cfg: Config, wall_time_s: float) -> float:
    """What a trial rented for `wall_time_s`. A GPU trial holds its devices: workers x
    devices_per_trial x hours x price. A CPU machine is rented whole and shared: a trial pays
    the share of its cores it held (train.threads of os.cpu_count(); all of them when unset),
    however many worker processes it ran them in."""
    hw = cfg.hardware
    if hw.device == "cpu":
        cores = os.cpu_count() or 1
        share = min(1.0, (cfg.train.threads or cores) / cores)
        return share * run_cost_usd(wall_time_s, hw)
    return cfg.method.group_size * run_cost_usd(wall_time_s, hw)


def experiments_per_dollar(cost: float) -> float:
    return 1.0 / cost if cost > 0 else float("inf")


def hardware_names() -> list[str]:
    """The options of the hardware config group (conf/hardware)."""
    return group_options("hardware")


def load_hardware(name: str) -> HardwareConfig:
    """The hardware option NAME as Hydra composes it (compose_group caches it per file),
    validated; a missing or bad file is a one-line ConfigError naming the key, its value and
    what is allowed."""
    from pydantic import ValidationError

    where = f"conf/hardware/{name}.yaml"
    raw = compose_group("hardware", name)  # "hardware=NAME: no such hardware (allowed: ...)"
    try:
        return HardwareConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_hardware_problem(e) for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None


def _hardware_problem(error: dict) -> str:
    key = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (allowed: {', '.join(HardwareConfig.model_fields)})"
    if error["type"] == "missing":
        return f"{key}: required but not set"
    return f"{key}={error['input']!r}: {error['msg']}"


def hardware_catalog() -> dict[str, HardwareConfig]:
    """Every hardware option in conf/hardware, by name."""
    return {name: load_hardware(name) for name in hardware_names()}


def device_kinds() -> dict[str, str]:
    """Each hardware option's device: "cpu" or "cuda"."""
    return {name: hw.device for name, hw in hardware_catalog().items()}
