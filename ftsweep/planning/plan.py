"""The plan before launch: memory, hours and dollars per method and GPU layout, from config numbers.

`plan(cfg)` estimates, for full fine-tuning (ZeRO 0/2/3, with and without CPU offload, on 1..8
GPUs), LoRA and QLoRA on every GPU in conf/hardware: peak memory per device, whether it fits,
hours for a workload, dollars per run and experiments per dollar. No weights are loaded: the
model's `architecture` block (conf/model/*.yaml) is all it reads. `check_fits(cfg)` asks the
same of one trial before a sweep launches it.

What the estimates assume (plan()'s arguments override them):
- Precision. On CUDA hardware, bf16 mixed precision (fp16 on GPUs without bf16): weights and
  activations in 16 bits, and full fine-tuning keeps fp32 master weights and AdamW states.
  train.precision's default (fp32) is sized for the CPU, so the plan ignores it on GPUs unless
  `precision=` is passed; on CPU it uses train.precision, as the trial does. check_fits() uses
  train.precision everywhere: it judges the trial as configured.
- Batch. Memory at train.batch_size sequences of train.seq_len tokens, every sequence padded to
  seq_len: an upper bound for shorter data. No gradient checkpointing (the trial uses none).
- Workload. Hours for `Workload()`: 5,000 examples x 512 tokens x 3 epochs (the guide's "5K
  examples"), each example cut at train.seq_len as training cuts it.
- Speed. A step reaches `hardware.mfu` of the device's peak_tflops (0.4 on GPUs until measured
  runs say otherwise: see `ftsweep.planning.fit.calibrate`, and `ftsweep.planning.gpu_check`
  for a RESULTS/gpu-check.json that `make gpu-check` wrote on one kind of GPU).
"""

from __future__ import annotations

from dataclasses import asdict, replace

from ftsweep.config import Config, ConfigError, HardwareConfig
from ftsweep.methods import Method, get_method, method_names
from ftsweep.planning.cost import (
    CPU_RUNTIME_GB,
    GPU_RUNTIME_GB,
    collective_bytes_per_step,
    collective_seconds_per_step,
    compute_tokens_per_s,
    cost_usd,
    hardware_catalog,
    offload_seconds_per_step,
    optimizer_seconds_per_step,
)
from ftsweep.planning.fit import calibrate
from ftsweep.planning.gpu_check import read_gpu_check, with_measured_memory, with_measured_mfu
from ftsweep.planning.layout import per_device_batch, splits_evenly
from ftsweep.planning.memory import BYTES, Memory, activation_gb, adapter_params
from ftsweep.planning.option import PlanOption, mark_cheapest, runs_per_dollar
from ftsweep.planning.settings import (
    Settings,
    Workload,
    adapter_of,
    plan_precision,
    settings_for,
)
from ftsweep.planning.table import format_plan_table, write_plan_json

# Where callers have always found them: the plan's inputs, its options and its output.
__all__ = [
    "DEFAULT_WORKLOAD",
    "MAX_GPUS",
    "PlanOption",
    "Settings",
    "Workload",
    "adapter_of",
    "check_fits",
    "share_of_device",
    "estimate",
    "estimate_trial",
    "format_plan_table",
    "plan",
    "settings_for",
    "write_plan_json",
]

MAX_GPUS = 8
# The guide's "5K examples": what plan() sizes hours for, and estimate_trial() always.
DEFAULT_WORKLOAD = Workload()


def estimate(
    s: Settings,
    hardware: HardwareConfig,
    method: str,
    num_gpus: int = 1,
    zero_stage: int | None = None,
    offload: bool = False,
    processes_per_device: int = 1,
) -> PlanOption:
    """One option's memory, speed and cost."""
    spec = get_method(method)
    adapter = spec.is_adapter
    memory = _memory(s, hardware, spec, zero_stage, offload, num_gpus * processes_per_device)
    # Ray Train workers on one CPU machine each hold a whole process
    peak = memory.total * processes_per_device
    tokens_per_step, step_s = _step(s, hardware, spec, num_gpus, zero_stage, offload)
    tokens = s.workload.tokens(s.seq_len)
    # the method variant's one-off work before the first step (PiSSA's SVD), then the steps
    setup_s = spec.setup_seconds(s.arch, s.adapter, hardware)
    hours = (setup_s + tokens / tokens_per_step * step_s) / 3600
    dollars = cost_usd(num_gpus, hours, hardware.price_per_device_hour)
    return PlanOption(
        method=method,
        gpu=hardware.name,
        num_gpus=num_gpus,
        zero_stage=None if adapter else (zero_stage or 0),
        offload=offload,
        est_peak_gb_per_gpu=round(peak, 3),
        memory_gb=hardware.memory_gb,
        fits=peak <= hardware.memory_gb,
        est_hours=hours,
        est_cost_usd=dollars,
        experiments_per_dollar=runs_per_dollar(dollars),
        est_tokens_per_s=tokens_per_step / step_s,
        est_host_gb=round(memory.host, 3),
        model=s.model,
        precision=s.precision,
        batch_size=s.batch_size,
        seq_len=s.seq_len,
        workload_tokens=tokens,
        lora_r=s.adapter.r if adapter else None,
        target_modules=s.adapter.label if adapter else None,
        optimizer=None if adapter else s.optimizer,
        est_setup_s=setup_s,
        breakdown_gb={k: round(v, 3) for k, v in asdict(memory).items() if k != "grads_persist"},
        grads_persist=memory.grads_persist,
        processes=processes_per_device,
    )


def _memory(
    s: Settings,
    hardware: HardwareConfig,
    spec: Method,
    zero_stage: int | None,
    offload: bool,
    processes: int,
) -> Memory:
    """One process's peak on one device: the method's states, the activations of its share of
    the batch (the global batch split over every data-parallel process), the runtime."""
    shards = processes if hardware.device != "cpu" else 1  # one CPU machine holds every copy
    state = spec.state_memory(
        s.arch, s.precision, s.adapter, zero_stage, offload, shards, optimizer=s.optimizer
    )
    adapter = s.adapter if spec.trains_adapter() else None
    tokens = per_device_batch(s.batch_size, processes) * s.seq_len
    activations = activation_gb(
        s.arch, tokens, BYTES[s.precision], adapter, fp32_residual=spec.fp32_residual(zero_stage)
    )
    runtime = CPU_RUNTIME_GB if hardware.device == "cpu" else GPU_RUNTIME_GB
    return replace(state, activations=activations, runtime=runtime)


def _step(
    s: Settings,
    hardware: HardwareConfig,
    spec: Method,
    num_gpus: int,
    zero_stage: int | None,
    offload: bool,
) -> tuple[int, float]:
    """Tokens one optimizer step trains on (the global batch, split over the GPUs), and the
    seconds it takes."""
    context = s.workload.context(s.seq_len)
    trained = adapter_params(s.arch, s.adapter) if spec.trains_adapter() else s.arch.num_params
    flops = spec.flops_per_token(s.arch, context, trained if spec.trains_adapter() else 0)
    tokens = s.batch_size * context * s.grad_accum
    speed = spec.speed_factor * spec.variant_speed(s.adapter)
    seconds = tokens / compute_tokens_per_s(flops, hardware, speed, num_gpus)
    stage = zero_stage or 0
    seconds += collective_seconds_per_step(
        collective_bytes_per_step(
            s.arch.num_params, trained, s.precision, stage, num_gpus, s.grad_accum
        ),
        hardware,
    )
    if offload:
        seconds += offload_seconds_per_step(s.arch, s.precision, stage, num_gpus, s.grad_accum)
    else:
        # ZeRO-1 and up shard the optimizer states: each device steps its share
        shards = num_gpus if stage >= 1 else 1
        seconds += optimizer_seconds_per_step(
            trained / shards, hardware, spec.optimizer_step_bytes(s.optimizer)
        )
    return tokens, seconds


def plan(
    cfg: Config,
    *,
    methods: tuple[str, ...] | list[str] | None = None,
    hardware: list[str] | None = None,
    workload: Workload = DEFAULT_WORKLOAD,
    precision: str | None = None,
    max_gpus: int = MAX_GPUS,
    measured: list[dict] | None = None,
) -> list[PlanOption]:
    """Every method on every GPU layout, estimated; `measured` runs calibrate the estimates.

    Each method is tried on the layouts it plans (`Method.plan_layouts`: full fine-tuning each
    ZeRO layout on 1..max_gpus GPUs, one process on CPU; LoRA and QLoRA one device), with each
    optimizer it plans (`Method.plan_optimizers`: full fine-tuning's 8-bit AdamW beside AdamW).
    `hardware` names conf/hardware options (default: all).
    """
    methods = methods or method_names()
    _check_arguments(methods, precision, max_gpus)
    catalog = hardware_catalog()
    names = hardware or sorted(catalog, key=lambda n: catalog[n].price_per_device_hour)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise ConfigError(
            f"hardware={','.join(unknown)}: no such hardware (allowed: {', '.join(catalog)})"
        )
    base = settings_for(cfg, cfg.train.precision, workload)
    # a gpu-check in the results folder: its GPU's measured MFU and memory ratio
    check = read_gpu_check(cfg.results_path)
    options = []
    for name in names:
        hw = catalog[name]
        s = replace(base, precision=plan_precision(cfg, hw, precision))
        for method in methods:
            method_hw = with_measured_mfu(check, hw, method, s.model, s.precision)
            spec = get_method(method)
            for optimizer in spec.plan_optimizers(s.optimizer):
                with_optimizer = replace(s, optimizer=optimizer)
                for n, stage, offload in spec.plan_layouts(hw.device == "cpu", max_gpus, optimizer):
                    # only layouts the trainer accepts: the global batch split evenly over n GPUs
                    if splits_evenly(s.batch_size, n):
                        options.append(
                            estimate(with_optimizer, method_hw, method, n, stage, offload)
                        )
    options = with_measured_memory(options, check)
    return calibrate(options, measured) if measured else mark_cheapest(options)


def _check_arguments(methods, precision: str | None, max_gpus: int) -> None:
    for method in methods:
        if method not in method_names():
            raise ConfigError(
                f"method={method}: no such method (allowed: {', '.join(method_names())})"
            )
    if not 1 <= max_gpus <= 1024:
        raise ConfigError(f"gpus={max_gpus}: must be between 1 and 1024")
    if precision is not None and precision not in BYTES:
        raise ConfigError(f"precision={precision}: not a precision (allowed: {', '.join(BYTES)})")


def estimate_trial(cfg: Config, measured: list[dict] | None = None) -> PlanOption | None:
    """The plan's estimate for one trial as configured: its train.precision, method knobs and
    workers. None when the model has no architecture numbers or its adapters' modules are not
    Llama-style projections: then nothing can be told."""
    if cfg.model.architecture is None:
        return None
    try:
        settings = settings_for(cfg, cfg.train.precision, DEFAULT_WORKLOAD)
    except ConfigError:
        return None
    m, hw = cfg.method, cfg.hardware
    workers = m.group_size
    on_cpu = hw.device == "cpu"
    check = read_gpu_check(cfg.results_path)
    hw = share_of_device(hw)
    option = estimate(
        settings,
        with_measured_mfu(check, hw, m.name, settings.model, settings.precision),
        m.name,
        num_gpus=1 if on_cpu else workers,
        # the layout knobs of a method that has them (full fine-tuning's)
        zero_stage=getattr(m, "zero_stage", None),
        offload=getattr(m, "offload", False),
        # Ray Train's workers on one CPU machine share its memory
        processes_per_device=workers if on_cpu else 1,
    )
    (option,) = with_measured_memory([option], check)
    return calibrate([option], measured)[0] if measured else option


def share_of_device(hw: HardwareConfig) -> HardwareConfig:
    """The device a trial holds: a trial given a share of one GPU (devices_per_trial < 1)
    holds that share of its memory, its compute and its price, so the plan checks it against
    what it can use while the others run beside it."""
    share = hw.devices_per_trial
    if share >= 1:
        return hw
    return hw.model_copy(
        update={
            "memory_gb": hw.memory_gb * share,
            "peak_tflops": hw.peak_tflops * share,
            "price_per_device_hour": hw.price_per_device_hour * share,
            "memory_bandwidth_gb_s": hw.memory_bandwidth_gb_s * share,
        }
    )


def check_fits(cfg: Config, measured: list[dict] | None = None) -> str | None:
    """Why this trial cannot fit its hardware's memory, or None when it fits (or cannot be told).

    A sweep calls it before launching a trial, and launches anyway under sweep.force=true.
    """
    option = estimate_trial(cfg, measured)
    if option is None or option.fits:
        return None
    hw, m = cfg.hardware, cfg.method
    on_cpu = hw.device == "cpu"
    detail = Memory(**option.breakdown_gb, grads_persist=option.grads_persist).describe()
    if option.processes > 1:
        detail = f"{option.processes} workers x ({detail})"
    remedies = ["lower train.batch_size or train.seq_len", *m.spec.remedies(m, on_cpu)]
    return (
        f"plan: {_label(option, on_cpu)} of {cfg.model.name} needs ~{option.est_peak_gb_per_gpu:.1f} "
        f"GB per {'machine' if on_cpu else 'GPU'}: {detail}, at batch {cfg.train.batch_size} x "
        f"{cfg.train.seq_len} tokens in {cfg.train.precision}; hardware={hw.name} has "
        f"{_memory_held(hw)}. To fit: {'; '.join(remedies)}; or pick bigger "
        f"hardware (`ftsweep plan model={cfg.model.name}` lists what fits). sweep.force=true "
        "launches it anyway"
    )


def _memory_held(hw: HardwareConfig) -> str:
    if hw.devices_per_trial < 1:
        return f"{hw.memory_gb:g} GB, of which a trial's share (devices_per_trial={hw.devices_per_trial:g}) is {hw.memory_gb * hw.devices_per_trial:g} GB"
    return f"{hw.memory_gb:g} GB"


def _label(option: PlanOption, on_cpu: bool) -> str:
    # the method as its registry entry names it, with its rank or its layout
    spec = get_method(option.method)
    if spec.is_adapter:
        return f"{spec.label} r={option.lora_r}"
    gpus = "" if on_cpu else f", {option.num_gpus} GPU{'s' * (option.num_gpus > 1)}"
    return f"{spec.label} ({option.layout}{gpus})"
