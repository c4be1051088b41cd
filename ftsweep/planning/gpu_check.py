"""What `make gpu-check` measured on one GPU, read back for the plan (RESULTS/gpu-check.json).

`bench.gpu_check` writes the file on a CUDA machine: per method, the FLOP utilisation a step
reached against the datasheet peak of the GPU's conf/hardware entry (`mfu`), and CUDA's
allocator peak over the plan's estimate of the same config (`memory_ratio`, the estimate less
its fixed runtime term, which the allocator does not count). The plan uses them for that GPU
kind only, where the settings are the ones measured, as it uses measured runs
(`ftsweep.planning.fit`):

- MFU: on options of the checked hardware, model and precision, the method's compute runs at
  the measured utilisation instead of `hardware.mfu` x the method's speed factor (the time of
  collectives and of the optimizer step is estimated as before);
- memory: on those options, when batch, sequence length and adapter knobs also match what was
  measured, every layout of the method scales the model-sized terms by the ratio (a ratio
  measured at one batch size does not carry to another: bench/README.md's
  `memory_estimate_error_calibrated`).

The measured step includes AdamW's own step, which the plan also estimates apart: a measured
MFU makes hours a little long, by the optimizer's share of a step (small at a large batch).

A missing file calibrates nothing; a file that cannot be read is ignored with one line on stderr.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ftsweep.config import HardwareConfig
from ftsweep.methods import get_method
from ftsweep.planning.fit import SCALED_TERMS
from ftsweep.planning.option import PlanOption

FILE_NAME = "gpu-check.json"
FORMAT = "ftsweep-gpu-check/1"
# What must match for a measured memory ratio to apply: the batch, the adapters, and the
# optimizer (8-bit AdamW's states are a quarter of AdamW's) where options carry one.
MEMORY_MATCH_KEYS = ("batch_size", "seq_len", "lora_r", "target_modules", "optimizer")


@dataclass(frozen=True)
class MethodCheck:
    """One method's figures on the checked GPU (None where not measured)."""

    mfu: float | None
    memory_ratio: float | None
    settings: dict  # MEMORY_MATCH_KEYS as measured


@dataclass(frozen=True)
class GpuCheck:
    hardware: str  # the conf/hardware entry the GPU matched
    model: str
    precision: str
    methods: dict[str, MethodCheck]
    device: str  # torch.cuda.get_device_name(), as measured

    def applies(self, hardware: str, model: str, precision: str, method: str) -> bool:
        measured = (self.hardware, self.model, self.precision)
        return (hardware, model, precision) == measured and method in self.methods


def read_gpu_check(results_dir: str | Path) -> GpuCheck | None:
    """The gpu-check in `results_dir`, or None: no file, no matched hardware (a GPU with no
    datasheet in conf/hardware calibrates nothing), or a file that cannot be read."""
    path = Path(results_dir) / FILE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        if not data.get("hardware"):
            return None
        methods = {
            name: MethodCheck(
                mfu=_positive(entry.get("mfu")),
                memory_ratio=_positive(entry.get("memory_ratio")),
                settings=dict(entry.get("settings") or {}),
            )
            for name, entry in data["methods"].items()
        }
        return GpuCheck(
            hardware=str(data["hardware"]),
            model=str(data["model"]),
            precision=str(data["precision"]),
            methods=methods,
            device=str(data.get("device", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"ftsweep: {path} ignored: {exc}", file=sys.stderr)
        return None


def with_measured_mfu(
    check: GpuCheck | None, hardware: HardwareConfig, method: str, model: str, precision: str
) -> HardwareConfig:
    """`hardware` with the utilisation gpu-check measured for `method`, where it applies.

    The plan's compute runs at hardware.mfu x the method's speed factor; the measured MFU
    is that product, so hardware.mfu becomes measured / speed factor.
    """
    if check is None or not check.applies(hardware.name, model, precision, method):
        return hardware
    measured = check.methods[method].mfu
    if measured is None:
        return hardware
    return hardware.model_copy(update={"mfu": min(1.0, measured / get_method(method).speed_factor)})


def with_measured_memory(options: list[PlanOption], check: GpuCheck | None) -> list[PlanOption]:
    """Options on the checked GPU with its memory ratio applied (where the settings match) and
    a note of what gpu-check changed; every other option as it was."""
    if check is None:
        return options
    return [_calibrated(o, check) for o in options]


def _calibrated(option: PlanOption, check: GpuCheck) -> PlanOption:
    if not check.applies(option.gpu, option.model, option.precision, option.method):
        return option
    measured = check.methods[option.method]
    notes = []
    if measured.mfu is not None:
        notes.append(f"MFU {measured.mfu:.3f}")
    ratio = measured.memory_ratio if _same_settings(option, measured.settings) else None
    if ratio is not None:
        option = _scaled_memory(option, ratio)
        notes.append(f"memory x{ratio:.2f}")
    if not notes:
        return option
    note = f"{', '.join(notes)} from gpu-check on {check.hardware} ({check.device})"
    return replace(option, calibrated="; ".join(n for n in (option.calibrated, note) if n))


def _same_settings(option: PlanOption, settings: dict) -> bool:
    # compared as text, as a file of an older check recorded them; a key it did not record
    # matches anything
    return all(
        str(settings[key]) == str(getattr(option, key, None))
        for key in MEMORY_MATCH_KEYS
        if key in settings
    )


def _scaled_memory(option: PlanOption, ratio: float) -> PlanOption:
    # the model-sized terms scale; the fixed runtime term (CUDA context) does not
    runtime = option.breakdown_gb.get("runtime", 0.0)
    model_part = option.est_peak_gb_per_gpu / option.processes - runtime
    peak = (runtime + model_part * ratio) * option.processes
    breakdown = {
        k: round(v * (ratio if k in SCALED_TERMS else 1.0), 3)
        for k, v in option.breakdown_gb.items()
    }
    return replace(
        option,
        est_peak_gb_per_gpu=round(peak, 3),
        fits=peak <= option.memory_gb,
        breakdown_gb=breakdown,
    )


def _positive(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None
