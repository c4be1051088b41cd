"""What each method cost: measured on the sweep's hardware, projected to a target GPU, and how
old the prices behind those dollars are.

Hardware comes from the `hardware` config group (`ftsweep.planning.cost.load_hardware`), composed
once per name a sweep uses.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ftsweep.config import ConfigError, HardwareConfig
from ftsweep.config.sources import group_options
from ftsweep.planning.cost import cost_usd, experiments_per_dollar, load_hardware
from ftsweep.report.methods import by_method, is_full
from ftsweep.report.runs import RunRow

PRICE_MAX_AGE_DAYS = 90
DEFAULT_TARGET_GPU = "a100-80gb"  # what `ftsweep report` projects to unless target= says otherwise


# --- hardware and its prices -----------------------------------------------------------------


def hardware_named(names: Iterable[str]) -> dict[str, HardwareConfig]:
    """The hardware options among these names, by name; names not in conf/hardware are left out."""
    options = set(group_options("hardware"))
    return {name: load_hardware(name) for name in sorted(set(names)) if name in options}


def price_age_days(hardware: HardwareConfig, today: dt.date) -> int | None:
    try:
        return (today - dt.date.fromisoformat(hardware.price_date)).days
    except ValueError:
        return None


def price_warnings(hardware: Iterable[HardwareConfig], today: dt.date) -> list[str]:
    warnings = []
    for hw in hardware:
        age = price_age_days(hw, today)
        if age is None:
            warnings.append(
                f"{hw.name}: price date {hw.price_date!r} is not a date (YYYY-MM-DD); check the price"
            )
        elif age > PRICE_MAX_AGE_DAYS:
            warnings.append(
                f"{hw.name}: price ${hw.price_per_device_hour}/device-hour is from {hw.price_date}, "
                f"{age} days old (older than {PRICE_MAX_AGE_DAYS}): check {hw.price_source}"
            )
    return warnings


def effective_tflops(hardware: HardwareConfig) -> float:
    # What a fine-tuning step reaches: peak x the share of it (mfu) the hardware file records.
    return hardware.peak_tflops * hardware.mfu


def projected_seconds(measured_s: float, measured_tflops: float, target_tflops: float) -> float:
    # The same work at another speed: time x (measured device's TFLOP/s / target's TFLOP/s).
    # Optimistic for small models, whose steps rarely reach a big GPU's usual share of peak.
    return measured_s * measured_tflops / target_tflops


def run_cost_on(
    row: RunRow, target: HardwareConfig | None, hardware: dict[str, HardwareConfig]
) -> float:
    """A run's cost on the target hardware: measured when it ran there (or no target is
    given), else projected there (`projected_run`); NaN when it cannot be projected."""
    name = row.params.get("hardware", "")
    if target is None or name == target.name:
        return row.cost_usd
    projected = projected_run(row, target, hardware, [])
    if projected is None:
        return math.nan
    seconds, option = projected
    return cost_usd(option.num_gpus, seconds / 3600, target.price_per_device_hour)


def projected_run(
    row: RunRow,
    target: HardwareConfig,
    hardware: dict[str, HardwareConfig],
    measured: list[dict],
    layouts: dict | None = None,
):
    """(seconds, layout) of this run on the target: its measured training tokens at the plan's
    speed on its method's cheapest layout there (calibrated by `measured` runs on that kind of
    device), plus what it spent besides training (start-up, evaluation) scaled by the devices'
    effective TFLOP/s. None when the run lacks what that needs or nothing fits the target."""
    ran_on = hardware.get(row.params.get("hardware", ""))
    tokens = row.metrics.get("tokens_trained", math.nan)
    if ran_on is None or not math.isfinite(tokens) or not math.isfinite(row.wall_time_s):
        return None
    option = cheapest_layout(row, target, measured, layouts)
    if option is None or option.est_tokens_per_s <= 0:
        return None
    training_s = row.metrics.get("train_time_s", 0.0) - row.metrics.get("checkpoint_time_s", 0.0)
    besides = max(row.wall_time_s - training_s, 0.0)
    seconds = tokens / option.est_tokens_per_s + projected_seconds(
        besides, effective_tflops(ran_on), effective_tflops(target)
    )
    return seconds, option


def row_settings(row: RunRow, target: HardwareConfig):
    """The plan's settings for this run's configuration on the target (`ftsweep.planning`), at
    the plan's standard workload; None when the plan cannot size it (a model without
    architecture numbers, modules it does not know)."""
    from ftsweep.config import ArchitectureConfig
    from ftsweep.config.compose import compose_group
    from ftsweep.config.sources import stored_option
    from ftsweep.methods import find_method
    from ftsweep.methods.lora import TARGET_PRESETS
    from ftsweep.planning.memory import Adapter
    from ftsweep.planning.plan import DEFAULT_WORKLOAD
    from ftsweep.planning.settings import Settings

    if find_method(row.method) is None:
        return None
    try:
        # A name read back from the store: only ever one of the model options, read as data.
        model = stored_option("model", row.params.get("model"), "the run's `model` param")
        arch = ArchitectureConfig.model_validate(compose_group("model", model)["architecture"])
        targets = row.targets or "all-linear"
        names = TARGET_PRESETS.get(targets) or targets.split(",")
        # the run's LoRA variant where it recorded one (DoRA's magnitudes, PiSSA's SVD)
        adapter = Adapter(
            row.lora_r or 1,
            tuple(names),
            0.0,
            targets,
            dora=row.params.get("use_dora") == "True",
            init=row.params.get("init", "default"),
        )
        precision = row.params.get("precision", "fp32")
        if target.device == "cuda":
            precision = "bf16" if target.bf16 else "fp16"
        return Settings(
            model=model,
            arch=arch,
            precision=precision,
            batch_size=int(row.params.get("batch_size", 1)),
            seq_len=int(row.params.get("seq_len", 512)),
            grad_accum=int(row.params.get("grad_accum", 1)),
            workload=DEFAULT_WORKLOAD,
            adapter=adapter,
            optimizer=row.params.get("optimizer", "adamw"),
        )
    except (ConfigError, KeyError, TypeError, ValueError):
        return None


def planned_cost_usd(row: RunRow, target: HardwareConfig) -> float:
    """What the plan (FLOPs per token, the method's own speed, the run's own layout on one
    device) says this run's configuration costs on the target for the plan's standard workload:
    a cost that CPU wall times cannot give for a GPU (QLoRA's dequantisation, say). NaN when the
    plan cannot size it."""
    from ftsweep.planning.plan import estimate

    settings = row_settings(row, target)
    if settings is None:
        return math.nan
    stage = row.params.get("zero_stage")
    option = estimate(
        settings,
        target,
        row.method,
        zero_stage=int(stage) if stage not in (None, "None") else None,
        offload=row.params.get("offload") == "True",
    )
    return option.est_cost_usd


def cheapest_layout(
    row: RunRow, target: HardwareConfig, measured: list[dict], layouts: dict | None = None
):
    """The plan's cheapest layout that fits for this run's method on the target (full
    fine-tuning on as many GPUs as it needs, adapters on one), calibrated by `measured` runs
    where they ran on that kind of device; None when nothing fits or the plan cannot size it.

    `layouts` keeps each answer for callers that ask for many runs against the same `measured`:
    runs of one configuration share it, and calibrating compares every measured run, so without
    it a report's projection grows with the square of its runs."""
    from ftsweep.methods import get_method
    from ftsweep.planning.fit import calibrate
    from ftsweep.planning.layout import splits_evenly
    from ftsweep.planning.option import cost_key
    from ftsweep.planning.plan import MAX_GPUS, estimate

    settings = row_settings(row, target)
    if settings is None:
        return None
    key = (row.method, target.name, repr(settings))
    if layouts is not None and key in layouts:
        return layouts[key]
    candidates = get_method(row.method).plan_layouts(
        target.device == "cpu", MAX_GPUS, settings.optimizer
    )
    options = [
        estimate(settings, target, row.method, n, stage, offload)
        for n, stage, offload in candidates
        if splits_evenly(settings.batch_size, n)
    ]
    options = calibrate(options, measured) if measured else options
    fitting = [o for o in options if o.fits]
    chosen = min(fitting, key=cost_key) if fitting else None
    if layouts is not None:
        layouts[key] = chosen
    return chosen


def group_cost_usd(
    rows: Iterable[RunRow], target: HardwareConfig | None, hardware: dict[str, HardwareConfig]
) -> float:
    """The mean cost per run of a configuration's runs on the target hardware."""
    costs = [run_cost_on(r, target, hardware) for r in rows]
    return statistics.fmean(costs) if costs else math.nan


# --- the guide's cost table ------------------------------------------------------------------


@dataclass
class MethodCost:
    """One method's column of the guide's cost table, measured or projected."""

    method: str
    devices: str
    runs: int
    wall_time_s: float
    cost_usd: float
    storage_mb: float

    @property
    def experiments_per_dollar(self) -> float:
        return experiments_per_dollar(self.cost_usd)


def _device_label(hw: HardwareConfig | None, name: str) -> str:
    if hw is None:
        return f"{name} (not in conf/hardware)"
    return f"{hw.devices_per_trial}x {hw.name} at ${hw.price_per_device_hour:g}/h"


def _mean_storage_mb(runs: list[RunRow]) -> float:
    return statistics.fmean(r.metrics.get("artifact_mb", math.nan) for r in runs)


def measured_costs(rows: list[RunRow], hardware: dict[str, HardwareConfig]) -> list[MethodCost]:
    """Each method's finished runs as measured; `hardware` holds the options they ran on."""
    out = []
    for method, runs in by_method(r for r in rows if r.usable).items():
        names = sorted({r.params.get("hardware", "?") for r in runs})
        out.append(
            MethodCost(
                method=method,
                devices="; ".join(_device_label(hardware.get(n), n) for n in names),
                runs=len(runs),
                wall_time_s=statistics.fmean(r.wall_time_s for r in runs),
                cost_usd=statistics.fmean(r.cost_usd for r in runs),
                storage_mb=_mean_storage_mb(runs),
            )
        )
    return out


def projected_costs(
    rows: list[RunRow], target: HardwareConfig, hardware: dict[str, HardwareConfig]
) -> tuple[list[MethodCost], list[str]]:
    """Each method's runs on the target, each method on its own cheapest layout there.

    A run's training is its measured tokens at the plan's speed for that layout (calibrated by
    measured runs on that kind of device, where there are any); what it spent besides training
    (start-up, evaluation) is scaled by the devices' effective TFLOP/s. Notes say what could not
    be projected and whether the speed was calibrated.
    """
    out, notes = [], []
    usable = [r for r in rows if r.usable]
    measured = [{**r.params, **r.metrics, "run_id": r.run_id, "run_name": r.name} for r in usable]
    layouts: dict = {}  # one calibrated layout per configuration, not one per run
    for method, runs in by_method(usable).items():
        projected = []
        for row in runs:
            one = projected_run(row, target, hardware, measured, layouts)
            if one is None:
                notes.append(
                    f"{row.name}: not projected (no hardware or trained tokens recorded, or no "
                    f"layout the plan knows fits {target.name})"
                )
            else:
                projected.append(one)
        if not projected:
            continue
        option = projected[0][1]  # one layout per method: its configurations share model and batch
        wall = statistics.fmean(seconds for seconds, _ in projected)
        speed = option.calibrated or "not calibrated (no run of it on that kind of device)"
        notes.append(
            f"{method}: {option.num_gpus}x {target.name}, {option.layout}, "
            f"{option.est_tokens_per_s:,.0f} tokens/s planned; {speed}"
        )
        out.append(
            MethodCost(
                method=method,
                devices=f"{option.num_gpus}x {target.name} ({option.layout}) at ${target.price_per_device_hour:g}/h",
                runs=len(projected),
                wall_time_s=wall,
                cost_usd=cost_usd(option.num_gpus, wall / 3600, target.price_per_device_hour),
                storage_mb=_mean_storage_mb(runs),
            )
        )
    return out, notes


def gain_over_full(costs: list[MethodCost]) -> dict[str, float]:
    """Experiments per dollar of each method divided by full fine-tuning's."""
    full = next((c for c in costs if is_full(c.method)), None)
    if full is None:
        return {}
    return {c.method: c.experiments_per_dollar / full.experiments_per_dollar for c in costs}
