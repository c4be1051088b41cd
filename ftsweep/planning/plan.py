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
  runs say otherwise: see calibrate()).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ftsweep.config import (
    CONF_DIR,
    ArchitectureConfig,
    Config,
    ConfigError,
    HardwareConfig,
)
from ftsweep.methods import get_method, method_names
from ftsweep.methods.lora import TARGET_PRESETS
from ftsweep.planning.cost import (
    CPU_RUNTIME_GB,
    GPU_RUNTIME_GB,
    compute_tokens_per_s,
    cost_usd,
    experiments_per_dollar,
    hardware_catalog,
    offload_seconds_per_step,
)
from ftsweep.planning.memory import BYTES, Adapter, Memory, activation_gb, adapter_params

MAX_GPUS = 8


@dataclass(frozen=True)
class Workload:
    """What one run trains on, for its hours: the guide's "5K examples" by default."""

    examples: int = 5000
    tokens_per_example: int = 512
    epochs: int = 3

    def tokens(self, seq_len: int) -> int:
        # examples x tokens each (cut at seq_len, as training cuts them) x epochs
        return self.examples * self.context(seq_len) * self.epochs

    def context(self, seq_len: int) -> int:
        return min(self.tokens_per_example, seq_len)


@dataclass(frozen=True)
class PlanOption:
    """One way to run: a method on a GPU layout, with its estimates. plan.json holds these."""

    method: str
    gpu: str
    num_gpus: int
    zero_stage: int | None
    offload: bool
    est_peak_gb_per_gpu: float
    memory_gb: float
    fits: bool
    est_hours: float
    est_cost_usd: float
    experiments_per_dollar: float | None
    est_tokens_per_s: float
    est_host_gb: float
    model: str
    precision: str
    batch_size: int
    seq_len: int
    workload_tokens: int
    lora_r: int | None = None
    target_modules: str | None = None
    breakdown_gb: dict[str, float] = field(default_factory=dict)
    grads_persist: bool = True  # see cost.Memory: False means grads and activations overlap
    processes: int = 1  # Ray Train workers sharing one CPU machine's memory
    cheapest: bool = False  # the cheapest option that fits, for its method
    calibrated: str = ""  # how measured runs changed the estimate, if they did

    @property
    def layout(self) -> str:
        return get_method(self.method).layout_label(self.zero_stage, self.offload)


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    model: str
    arch: ArchitectureConfig
    precision: str
    batch_size: int
    seq_len: int
    grad_accum: int
    workload: Workload
    adapter: Adapter


def estimate(
    s: _Settings,
    hardware: HardwareConfig,
    method: str,
    num_gpus: int = 1,
    zero_stage: int | None = None,
    offload: bool = False,
    processes_per_device: int = 1,
) -> PlanOption:
    """One option's memory, speed and cost."""
    arch, act_bytes = s.arch, BYTES[s.precision]
    spec = get_method(method)
    lora = spec.is_adapter
    adapter = s.adapter if lora else None
    state = spec.state_memory(arch, s.precision, s.adapter, zero_stage, offload, num_gpus)
    runtime = CPU_RUNTIME_GB if hardware.device == "cpu" else GPU_RUNTIME_GB
    activations = activation_gb(arch, s.batch_size * s.seq_len, act_bytes, adapter)
    memory = replace(state, activations=activations, runtime=runtime)
    # Ray Train workers on one CPU machine each hold a whole process
    peak = memory.total * processes_per_device

    context = s.workload.context(s.seq_len)
    a = adapter_params(arch, s.adapter) if lora else 0
    flops = spec.flops_per_token(arch, context, a)
    tokens_per_step = s.batch_size * context * s.grad_accum * num_gpus
    step_s = tokens_per_step / compute_tokens_per_s(
        flops, hardware, spec.speed_factor, num_gpus, zero_stage
    )
    if offload:
        step_s += offload_seconds_per_step(
            arch, s.precision, zero_stage or 0, num_gpus, s.grad_accum
        )
    tokens = s.workload.tokens(s.seq_len)
    hours = tokens / tokens_per_step * step_s / 3600
    dollars = cost_usd(num_gpus, hours, hardware.price_per_device_hour)
    return PlanOption(
        method=method,
        gpu=hardware.name,
        num_gpus=num_gpus,
        zero_stage=None if lora else (zero_stage or 0),
        offload=offload,
        est_peak_gb_per_gpu=round(peak, 3),
        memory_gb=hardware.memory_gb,
        fits=peak <= hardware.memory_gb,
        est_hours=hours,
        est_cost_usd=dollars,
        experiments_per_dollar=_finite(experiments_per_dollar(dollars)),
        est_tokens_per_s=tokens_per_step / step_s,
        est_host_gb=round(memory.host, 3),
        model=s.model,
        precision=s.precision,
        batch_size=s.batch_size,
        seq_len=s.seq_len,
        workload_tokens=tokens,
        lora_r=s.adapter.r if lora else None,
        target_modules=s.adapter.label if lora else None,
        breakdown_gb={k: round(v, 3) for k, v in asdict(memory).items() if k != "grads_persist"},
        grads_persist=memory.grads_persist,
        processes=processes_per_device,
    )


def plan(
    cfg: Config,
    *,
    methods: tuple[str, ...] | list[str] | None = None,
    hardware: list[str] | None = None,
    workload: Workload = Workload(),
    precision: str | None = None,
    max_gpus: int = MAX_GPUS,
    measured: list[dict] | None = None,
) -> list[PlanOption]:
    """Every method on every GPU layout, estimated; `measured` runs calibrate the estimates.

    Full fine-tuning is tried with each ZeRO layout on 1..max_gpus GPUs (one process on CPU);
    LoRA and QLoRA on one device. `hardware` names conf/hardware options (default: all).
    """
    methods = methods or method_names()
    for method in methods:
        if method not in method_names():
            raise ConfigError(
                f"method={method}: no such method (allowed: {', '.join(method_names())})"
            )
    if not 1 <= max_gpus <= 1024:
        raise ConfigError(f"gpus={max_gpus}: must be between 1 and 1024")
    catalog = hardware_catalog()
    names = hardware or sorted(catalog, key=lambda n: catalog[n].price_per_device_hour)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise ConfigError(
            f"hardware={','.join(unknown)}: no such hardware (allowed: {', '.join(catalog)})"
        )
    options = []
    for name in names:
        hw = catalog[name]
        s = _settings(cfg, _plan_precision(cfg, hw, precision), workload)
        for method in methods:
            for n, stage, offload in get_method(method).plan_layouts(hw.device == "cpu", max_gpus):
                options.append(estimate(s, hw, method, n, stage, offload))
    return calibrate(options, measured) if measured else _mark_cheapest(options)


def estimate_trial(cfg: Config, measured: list[dict] | None = None) -> PlanOption | None:
    """The plan's estimate for one trial as configured: its train.precision, method knobs and
    workers. None when the model has no architecture numbers or its adapters' modules are not
    Llama-style projections: then nothing can be told."""
    if cfg.model.architecture is None:
        return None
    try:
        settings = _settings(cfg, cfg.train.precision, Workload())
    except ConfigError:
        return None
    m, hw = cfg.method, cfg.hardware
    workers = m.group_size
    on_cpu = hw.device == "cpu"
    option = estimate(
        settings,
        hw,
        m.name,
        num_gpus=1 if on_cpu else workers,
        zero_stage=getattr(m, "zero_stage", None),
        offload=getattr(m, "offload", False),
        # Ray Train's workers on one CPU machine share its memory
        processes_per_device=workers if on_cpu else 1,
    )
    return calibrate([option], measured)[0] if measured else option


def check_fits(cfg: Config, measured: list[dict] | None = None) -> str | None:
    """Why this trial cannot fit its hardware's memory, or None when it fits (or cannot be told).

    A sweep calls it before launching a trial, and launches anyway under sweep.force=true.
    """
    option = estimate_trial(cfg, measured)
    if option is None or option.fits:
        return None
    hw, m = cfg.hardware, cfg.method
    on_cpu = hw.device == "cpu"
    workers = m.group_size
    detail = Memory(**option.breakdown_gb, grads_persist=option.grads_persist).describe()
    if option.processes > 1:
        detail = f"{option.processes} workers x ({detail})"
    return (
        f"plan: {_label(option, on_cpu)} of {cfg.model.name} needs ~{option.est_peak_gb_per_gpu:.1f} "
        f"GB per {'machine' if on_cpu else 'GPU'}: {detail}, at batch {cfg.train.batch_size} x "
        f"{cfg.train.seq_len} tokens in {cfg.train.precision}; hardware={hw.name} has "
        f"{hw.memory_gb:g} GB. To fit: {'; '.join(_remedies(cfg, on_cpu, workers))}; or pick bigger "
        f"hardware (`ftsweep plan model={cfg.model.name}` lists what fits). sweep.force=true "
        "launches it anyway"
    )


def _remedies(cfg: Config, on_cpu: bool, workers: int) -> list[str]:
    m = cfg.method
    return ["lower train.batch_size or train.seq_len", *m.spec.remedies(m, on_cpu)]


def _label(option: PlanOption, on_cpu: bool) -> str:
    spec = get_method(option.method)
    if spec.is_adapter:
        return f"{spec.label} r={option.lora_r}"
    gpus = "" if on_cpu else f", {option.num_gpus} GPU{'s' * (option.num_gpus > 1)}"
    return f"full fine-tuning ({option.layout}{gpus})"


def _settings(cfg: Config, precision: str, workload: Workload) -> _Settings:
    arch = cfg.model.architecture
    if arch is None:
        raise ConfigError(
            f"model.architecture: {cfg.model.name} has none; add num_params, hidden_size, num_layers, "
            f"num_heads, num_kv_heads, intermediate_size and vocab_size to conf/model/{cfg.model.name}.yaml"
        )
    return _Settings(
        model=cfg.model.name,
        arch=arch,
        precision=precision,
        batch_size=cfg.train.batch_size,
        seq_len=cfg.train.seq_len,
        grad_accum=cfg.train.grad_accum,
        workload=workload,
        adapter=adapter_of(cfg),
    )


def _plan_precision(cfg: Config, hardware: HardwareConfig, override: str | None) -> str:
    """The override, else train.precision on CPU, else 16-bit mixed precision on GPUs."""
    if override is not None:
        if override not in BYTES:
            raise ConfigError(
                f"precision={override}: not a precision (allowed: {', '.join(BYTES)})"
            )
        return override
    if hardware.device == "cpu":
        return cfg.train.precision
    return "bf16" if hardware.bf16 else "fp16"


def adapter_of(cfg: Config) -> Adapter:
    """The LoRA knobs the plan sizes adapters with: the config's, or conf/method/lora.yaml's."""
    method = cfg.method
    if method.is_adapter:
        r, targets, dropout = method.lora_r, method.target_modules, method.lora_dropout
    else:
        import yaml

        raw = yaml.safe_load((CONF_DIR / "method" / "lora.yaml").read_text())
        r, targets, dropout = raw["lora_r"], raw["target_modules"], raw.get("lora_dropout", 0.0)
    names = TARGET_PRESETS[targets] if isinstance(targets, str) else list(targets)
    allowed = TARGET_PRESETS["all-linear"]
    unknown = [t for t in names if t not in allowed]
    if unknown:
        raise ConfigError(
            f"method.target_modules={','.join(unknown)}: the plan sizes Llama-style projections only "
            f"(allowed: {', '.join(allowed)} or a preset: {', '.join(TARGET_PRESETS)})"
        )
    label = targets if isinstance(targets, str) else ",".join(targets)
    return Adapter(r=r, targets=tuple(names), dropout=dropout, label=label)


# --- calibration -----------------------------------------------------------------------------

# Keys a measured row may carry (MLflow params, as text); where present they must match the option.
MATCH_KEYS = ("model", "batch_size", "seq_len", "precision", "lora_r", "target_modules")


def calibrate(options: list[PlanOption], measured: list[dict]) -> list[PlanOption]:
    """Estimates scaled by what runs measured, per method and kind of device (CPU or GPU).

    A measured row is {method, hardware, peak_mem_gb, tokens_per_s}, optionally with the keys in
    MATCH_KEYS and, for full fine-tuning, zero_stage, offload and num_gpus (default: ZeRO-0 on one
    device, as `ftsweep train` runs). Each row is compared with the option it ran as; the median
    ratio measured/estimated then scales every option of that method on that kind of device:
    memory beyond the fixed runtime term, and speed (so hours and dollars), which assumes every
    GPU reaches the same share of its peak as the measured one.
    """
    kinds = _device_kinds()
    ratios: dict[tuple[str, str], dict[str, list[float]]] = {}
    for row in measured:
        option = next((o for o in options if _ran_as(row, o)), None)
        if option is None:
            continue
        kind = kinds.get(option.gpu, "cuda")
        found = ratios.setdefault(
            (option.method, kind), {"memory": [], "speed": [], "hardware": []}
        )
        found["hardware"].append(option.gpu)
        model_part = _model_part(option)
        peak = _number(row.get("peak_mem_gb"))
        if peak is not None and model_part > 0:
            # on CPU the measured peak RSS includes the runtime; CUDA's allocator peak does not
            seen = peak - (option.breakdown_gb.get("runtime", 0.0) if kind == "cpu" else 0.0)
            if seen > 0:
                found["memory"].append(seen / model_part)
        speed = _number(row.get("tokens_per_s"))
        if speed and option.est_tokens_per_s > 0:
            found["speed"].append(speed / option.est_tokens_per_s)
    out = []
    for option in options:
        found = ratios.get((option.method, kinds.get(option.gpu, "cuda")))
        out.append(_scaled(option, found) if found else option)
    return _mark_cheapest(out)


def _scaled(option: PlanOption, found: dict[str, list[float]]) -> PlanOption:
    memory = statistics.median(found["memory"]) if found["memory"] else 1.0
    speed = statistics.median(found["speed"]) if found["speed"] else 1.0
    runtime = option.breakdown_gb.get("runtime", 0.0)
    peak = (runtime + _model_part(option) * memory) * option.processes
    breakdown = {
        k: round(v * (memory if k in ("weights", "grads", "optimizer", "activations") else 1.0), 3)
        for k, v in option.breakdown_gb.items()
    }
    runs = len(found["hardware"])
    where = ", ".join(sorted(set(found["hardware"])))
    cost = option.est_cost_usd / speed
    return replace(
        option,
        est_peak_gb_per_gpu=round(peak, 3),
        fits=peak <= option.memory_gb,
        est_tokens_per_s=option.est_tokens_per_s * speed,
        est_hours=option.est_hours / speed,
        est_cost_usd=cost,
        experiments_per_dollar=_finite(experiments_per_dollar(cost)),
        breakdown_gb=breakdown,
        calibrated=f"memory x{memory:.2f}, speed x{speed:.2f} from {runs} {option.method} run{'s' * (runs > 1)} on {where}",
    )


def _ran_as(row: dict, option: PlanOption) -> bool:
    if row.get("method") != option.method or row.get("hardware") != option.gpu:
        return False
    if not get_method(option.method).is_adapter:
        layout = {
            "zero_stage": row.get("zero_stage", 0),
            "offload": _flag(row.get("offload", False)),
            "num_gpus": row.get("num_gpus", row.get("num_workers", 1)),
        }
        if any(str(value) != str(getattr(option, key)) for key, value in layout.items()):
            return False
    return all(
        str(row[key]) == str(getattr(option, key))
        for key in MATCH_KEYS
        if row.get(key) is not None and getattr(option, key) is not None
    )


def _model_part(option: PlanOption) -> float:
    # one process's peak less the fixed runtime term: what the model's sizes scale
    return option.est_peak_gb_per_gpu / option.processes - option.breakdown_gb.get("runtime", 0.0)


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _finite(value: float) -> float | None:
    return value if value != float("inf") else None


def _device_kinds() -> dict[str, str]:
    return {name: hw.device for name, hw in hardware_catalog().items()}


def _mark_cheapest(options: list[PlanOption]) -> list[PlanOption]:
    """Flag, per method, the cheapest option that fits (fewer GPUs, then less memory, on a tie)."""
    best: dict[str, PlanOption] = {}
    for o in options:
        key = (o.est_cost_usd, o.num_gpus, o.est_peak_gb_per_gpu)
        if o.fits and (o.method not in best or key < _cost_key(best[o.method])):
            best[o.method] = o
    chosen = {id(o) for o in best.values()}
    return [replace(o, cheapest=id(o) in chosen) for o in options]


def _cost_key(o: PlanOption) -> tuple:
    return (o.est_cost_usd, o.num_gpus, o.est_peak_gb_per_gpu)


# --- output ----------------------------------------------------------------------------------


def write_plan_json(options: list[PlanOption], path: str | Path) -> Path:
    """plan.json: one object per option, with its layout spelled out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(o), "layout": o.layout} for o in options]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


def format_plan_table(options: list[PlanOption]) -> str:
    """Per method and device type, the cheapest layout that fits (else the smallest); * marks the
    cheapest of each method. plan.json holds every option."""
    if not options:
        return "no options to plan"
    first = options[0]
    picks = []
    for method in method_names():
        for gpu in dict.fromkeys(o.gpu for o in options):
            group = [o for o in options if o.method == method and o.gpu == gpu]
            if group:
                fitting = [o for o in group if o.fits]
                picks.append(
                    min(fitting, key=_cost_key) if fitting else min(group, key=_memory_key)
                )
    header = "method layout device n precision GB/device of_GB fits hours $/run runs/$".split()
    rows = [[*_cells(o), "*" if o.cheapest else ""] for o in picks]
    header = [h.replace("_", " ") for h in header] + [""]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"{first.model}: memory at batch {first.batch_size} x {first.seq_len} tokens "
        f"(train.batch_size, train.seq_len); hours for {first.workload_tokens / 1e6:.2f}M "
        "training tokens",
        *(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]
        ),
        "* the cheapest that fits, per method; each device shows its cheapest layout that fits, "
        f"else its smallest. All {len(options)} options are in plan.json.",
    ]
    unsharded = _one_device_unsharded(options)
    if unsharded:
        lines.append(f"One GPU, no sharding or offload: {unsharded}")
    notes = sorted({f"{o.method}: {o.calibrated}" for o in options if o.calibrated})
    lines += [f"calibrated: {n}" for n in notes] or [
        "not calibrated: no measured runs at these settings"
    ]
    return "\n".join(lines)


def _cells(o: PlanOption) -> list[str]:
    epd = o.experiments_per_dollar
    return [
        o.method,
        o.layout,
        o.gpu,
        str(o.num_gpus),
        o.precision,
        f"{o.est_peak_gb_per_gpu:.1f}",
        f"{o.memory_gb:g}",
        "yes" if o.fits else "no",
        _short(o.est_hours),
        _short(o.est_cost_usd),
        _short(epd) if epd is not None else "-",
    ]


def _one_device_unsharded(options: list[PlanOption]) -> str:
    """Each method's need on one GPU without ZeRO sharding or offload: the guide's comparison."""
    kinds = _device_kinds()
    needs = {}
    # bf16 devices first: the guide's GPUs
    for o in sorted(options, key=lambda o: o.precision != "bf16"):
        if (
            kinds.get(o.gpu) == "cuda"
            and o.num_gpus == 1
            and not o.offload
            and o.zero_stage in (None, 0)
        ):
            needs.setdefault(o.method, o)
    return ", ".join(
        f"{m} {o.est_peak_gb_per_gpu:.1f} GB ({o.precision})" for m, o in needs.items()
    )


def _memory_key(o: PlanOption) -> tuple:
    return (o.est_peak_gb_per_gpu, o.est_cost_usd)


def _short(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01:
        return f"{x:.2f}"
    return f"{x:.2g}"
