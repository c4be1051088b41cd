"""Calibration: the plan's estimates scaled by what measured runs used and reached.

`calibrate(options, measured)` compares each measured run with the option it ran as and scales
that method's options on that kind of device (CPU or GPU) by the median ratio.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from ftsweep.methods import get_method
from ftsweep.planning.cost import device_kinds
from ftsweep.planning.option import PlanOption, mark_cheapest, runs_per_dollar

# Keys a measured row may carry (MLflow params, as text); where present they must match the option.
MATCH_KEYS = ("model", "batch_size", "seq_len", "precision", "lora_r", "target_modules")
# The breakdown's terms that scale with the model's sizes (the runtime term does not).
SCALED_TERMS = ("weights", "grads", "optimizer", "activations")


def calibrate(options: list[PlanOption], measured: list[dict]) -> list[PlanOption]:
    """Estimates scaled by what runs measured, per method and kind of device (CPU or GPU).

    A measured row is {method, hardware, peak_mem_gb, tokens_per_s}, optionally with the keys in
    MATCH_KEYS and, for methods with sharded layouts (full fine-tuning), zero_stage, offload and
    num_gpus (default: ZeRO-0 on one device, as `ftsweep train` runs). Each row is compared with
    the option it ran as; the median ratio measured/estimated then scales every option of that
    method on that kind of device: memory beyond the fixed runtime term, and speed (so hours and
    dollars), which assumes every GPU reaches the same share of its peak as the measured one.
    """
    kinds = device_kinds()
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
    return mark_cheapest(out)


def _scaled(option: PlanOption, found: dict[str, list[float]]) -> PlanOption:
    memory = statistics.median(found["memory"]) if found["memory"] else 1.0
    speed = statistics.median(found["speed"]) if found["speed"] else 1.0
    runtime = option.breakdown_gb.get("runtime", 0.0)
    peak = (runtime + _model_part(option) * memory) * option.processes
    breakdown = {
        k: round(v * (memory if k in SCALED_TERMS else 1.0), 3)
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
        experiments_per_dollar=runs_per_dollar(cost),
        breakdown_gb=breakdown,
        # after what a gpu-check changed, if it did (ftsweep.planning.gpu_check)
        calibrated="; ".join(
            note
            for note in (
                option.calibrated,
                f"memory x{memory:.2f}, speed x{speed:.2f} from {runs} {option.method} run{'s' * (runs > 1)} on {where}",
            )
            if note
        ),
    )


def _ran_as(row: dict, option: PlanOption) -> bool:
    if row.get("method") != option.method or row.get("hardware") != option.gpu:
        return False
    if not get_method(option.method).is_adapter:
        # a method that shards: the run's layout, as its MLflow params record it
        layout = {
            "zero_stage": row.get("zero_stage", 0),
            "offload": _flag(row.get("offload", False)),
            "num_gpus": row.get("num_gpus", row.get("num_workers", 1)),
            # a run records its optimizer only where it is not AdamW (MethodKnobs.changed)
            "optimizer": row.get("optimizer", "adamw"),
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


def rows_used(options: list[PlanOption], measured: list[dict]) -> list[dict]:
    """The measured rows that calibrate some option (those `calibrate` learns from)."""
    return [row for row in measured if any(_ran_as(row, o) for o in options)]
