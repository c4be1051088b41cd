"""memory_estimate_error: |plan estimate - measured peak| / measured peak, worst over full
fine-tuning and LoRA at two batch sizes. Goal <= 0.15. Beside it,
memory_estimate_error_calibrated: the same with each case's estimate calibrated
(`ftsweep.planning.fit.calibrate`, as `ftsweep plan` does from measured runs) by the other
cases of its method only, so no case is calibrated by its own measurement.

Each case is one trial (`train_and_evaluate`, the method as conf/method configures it: full
fine-tuning through DeepSpeed ZeRO-2, LoRA through peft) in a fresh process, so its peak is its
own. The measured peak is the kernel's high-water mark of the process's resident memory
(VmHWM): exact, where the trial's own `peak_mem_gb` samples RSS every 0.2 s and can miss a
short peak (the details show both). The estimate is what the plan says of the same trial
(`ftsweep.planning.plan.estimate_trial`, as `check_fits` asks it before a sweep launches the
trial).

The plan sizes activations for sequences padded to train.seq_len; train.seq_len here is shorter
than every example of the format task (131-146 tokens), so every batch is exactly batch x
seq_len tokens, as the plan assumes, and the figure tests the memory model itself.
"""

from __future__ import annotations

import json
import sys

from bench.common import (
    NoRecord,
    compose,
    cpu_threads,
    emit,
    log,
    peak_rss_gb,
    read_result,
    run_process,
)

SETTINGS = {
    "full": {"model": "smollm2-135m", "batches": (2, 8), "seq_len": 128, "steps": 2},
    "quick": {"model": "smollm2-135m", "batches": (1, 4), "seq_len": 128, "steps": 1},
}
METHODS = ("full", "lora")


def case_overrides(model: str, method: str, batch: int, seq_len: int, steps: int) -> list[str]:
    return [
        f"model={model}",
        f"method={method}",
        f"train.batch_size={batch}",
        f"train.seq_len={seq_len}",
        f"train.max_steps={steps}",
        f"train.threads={cpu_threads()}",
        "data.num_train=16",  # as many as the steps use
        "data.num_eval=4",
        "train.max_new_tokens=4",
    ]


def plan_peak_gb(cfg) -> float:
    """The plan's peak per device for this trial as configured (what check_fits compares)."""
    from ftsweep.planning.plan import estimate_trial

    return estimate_trial(cfg).est_peak_gb_per_gpu


def measure_case(overrides: list[str]) -> dict:
    """In this (fresh) process: one trial, its peak, and the plan's estimate of it."""
    from ftsweep.trial.recipe import train_and_evaluate

    cfg = compose(overrides)
    metrics = train_and_evaluate(cfg, NoRecord.trial_id, NoRecord(), None)
    return {
        "measured_gb": peak_rss_gb(),
        "trial_peak_mem_gb": metrics["peak_mem_gb"],
        "plan_gb": plan_peak_gb(cfg),
        "zero_stage": getattr(cfg.method, "zero_stage", None),  # full fine-tuning's layout knob
    }


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    cases = []
    for batch in s["batches"]:
        for method in METHODS:
            overrides = case_overrides(s["model"], method, batch, s["seq_len"], s["steps"])
            _, stdout = run_process(["-m", "bench.memory", "measure", json.dumps(overrides)])
            found = read_result(stdout)
            error = abs(found["plan_gb"] - found["measured_gb"]) / found["measured_gb"]
            cases.append({"method": method, "batch_size": batch, **found, "error": error})
            log(
                f"memory: {method} batch {batch}: plan {found['plan_gb']:.2f} GB, measured "
                f"{found['measured_gb']:.2f} GB (trial's sampled {found['trial_peak_mem_gb']:.2f}), "
                f"error {error:.3f}"
            )
    for case, calibrated in zip(cases, calibrated_estimates(cases, s), strict=True):
        case["plan_calibrated_gb"] = calibrated
        case["error_calibrated"] = abs(calibrated - case["measured_gb"]) / case["measured_gb"]
        log(
            f"memory: {case['method']} batch {case['batch_size']}: calibrated by the other "
            f"batch {calibrated:.2f} GB, error {case['error_calibrated']:.3f}"
        )
    details = {"model": s["model"], "seq_len": s["seq_len"], "steps": s["steps"], "cases": cases}
    return {
        "memory_estimate_error": max(c["error"] for c in cases),
        "memory_estimate_error_calibrated": max(c["error_calibrated"] for c in cases),
    }, details


def calibrated_estimates(cases: list[dict], s: dict) -> list[float]:
    """Each case's plan estimate calibrated by the measured peaks of its method's other cases."""
    from ftsweep.planning.fit import calibrate
    from ftsweep.planning.plan import estimate_trial

    out = []
    for case in cases:
        others = [c for c in cases if c["method"] == case["method"] and c is not case]
        options = [
            estimate_trial(
                compose(
                    case_overrides(
                        s["model"], c["method"], c["batch_size"], s["seq_len"], s["steps"]
                    )
                )
            )
            for c in (case, *others)
        ]
        measured = [
            {
                "method": c["method"],
                "hardware": options[0].gpu,
                "model": s["model"],
                "batch_size": c["batch_size"],
                "seq_len": s["seq_len"],
                "zero_stage": c["zero_stage"] or 0,
                "peak_mem_gb": c["measured_gb"],
            }
            for c in others
        ]
        out.append(calibrate(options, measured)[0].est_peak_gb_per_gpu)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        emit(measure_case(json.loads(sys.argv[2])))
