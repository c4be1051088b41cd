"""The GPU variant: absolute tokens/s and FLOP utilisation per method on CUDA, in bf16.

    python -m bench.gpu [--results DIR] [--batch 32] [--rounds 10] [--methods full,lora,...]
                        [Hydra overrides, e.g. model=smollm2-135m hardware=h100]

Per method (every registered one unless --methods says otherwise; each model built by the
project's `load_base_model` + `build_model` with train.precision=bf16, fp16 where the GPU has
no bf16; full fine-tuning at ZeRO stage 0, the plain torch AdamW these steps run): the step time of
forward + backward + AdamW step on one fixed batch of training examples (bench/steps.py, with
CUDA synchronised around each step), tokens/s (real tokens / step time), achieved FLOP/s (the
project's `flops_per_token` over batch x padded width), and utilisation against

- a bf16 matrix-product peak (8192 x 8192) measured in the same rounds, and
- the datasheet peak of the hardware group (conf/hardware/*.yaml: peak_tflops), taken from
  `hardware=` or guessed from the device name (H100, A100 40/80 GB, L4, T4).

Also lora_vs_full and qlora_vs_lora step-time ratios. Results go to DIR/bench-gpu.json and a
table. Without a CUDA device it says so and exits 2; `--allow-cpu` runs the same code on the
CPU (fp32, tiny-llama unless model= says otherwise) as a check of the script itself. Importing
this module imports nothing beyond the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/gpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# words of torch.cuda.get_device_name() -> conf/hardware group (A100s told apart by memory).
# Whole words: "L4" is not an L40S. h100.yaml is the SXM part's datasheet: an H100 PCIe or NVL
# (another peak) matches nothing, and nothing matched means no datasheet figure.
DEVICE_HARDWARE = (("H100", "h100"), ("L4", "l4"), ("T4", "t4"))
OTHER_PARTS = {"H100": {"PCIE", "NVL"}}


def guess_hardware(name: str, memory_gb: float) -> str | None:
    words = set(re.split(r"[^A-Z0-9]+", name.upper()))
    if "A100" in words:
        return "a100-80gb" if memory_gb > 60 else "a100-40gb"
    for word, hardware in DEVICE_HARDWARE:
        if word in words and not words & OTHER_PARTS.get(word, set()):
            return hardware
    return None


def plain_configs(model: str, batch: int | None, methods, overrides: list[str]) -> dict:
    """One config per method as bench/steps.py measures it, a method with ZeRO stages at stage 0.

    The steps are plain torch AdamW, so full fine-tuning is configured as a trial runs it
    without DeepSpeed: fp32 master weights under 16-bit autocast. At a ZeRO stage its weights
    would load in 16 bits for DeepSpeed's own fp32 copy, and plain AdamW would step those.
    `batch` None keeps the config's train.batch_size; `overrides` win (a model= among them
    replaces `model`).
    """
    from bench.common import compose
    from ftsweep.methods import get_method

    chosen = [] if any(o.startswith("model=") for o in overrides) else [f"model={model}"]
    size = [] if batch is None else [f"train.batch_size={batch}"]
    configs = {}
    for name in methods:
        knobs = get_method(name).knobs.model_fields
        stage = ["method.zero_stage=0"] if "zero_stage" in knobs else []
        configs[name] = compose([*chosen, f"method={name}", *stage, *size, *overrides])
    return configs


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results", help="folder for bench-gpu.json")
    parser.add_argument("--batch", type=int, default=32, help="sequences per step (default 32)")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per method")
    parser.add_argument("--methods", default="", help="comma-separated; default: every method")
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU: checks the script")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=, hardware=, ...)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        print(
            "bench.gpu: no CUDA device here; run it on a GPU machine "
            "(or with --allow-cpu to check the script on the CPU)",
            file=sys.stderr,
        )
        return 2

    from bench.common import environment, log
    from bench.steps import measure
    from ftsweep.methods import method_names

    overrides = list(args.overrides)
    keys = {o.split("=", 1)[0] for o in overrides}
    if on_gpu:
        device = "cuda"
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        props = torch.cuda.get_device_properties(0)
        device_name = props.name
        if "hardware" not in keys:
            guessed = guess_hardware(device_name, props.total_memory / 1e9)
            if guessed:
                overrides.append(f"hardware={guessed}")
        peak_n = 8192
    else:
        device, precision, device_name, peak_n = "cpu", "fp32", "cpu", 1024
        if "model" not in keys:
            overrides.append("model=tiny-llama")
    overrides.append(f"train.precision={precision}")
    methods = [m for m in args.methods.split(",") if m] or list(method_names())
    configs = plain_configs("smollm2-135m", args.batch, methods, overrides)
    log(f"gpu: {device_name}, {precision}, batch {args.batch}, methods {', '.join(methods)}")
    started = time.perf_counter()
    result = measure(configs, args.rounds, device=device, peak_dtype=precision, peak_n=peak_n)
    first = next(iter(configs.values()))
    datasheet = first.hardware.peak_tflops * 1e12 if first.hardware.device == "cuda" else None
    rows = {}
    for m in methods:
        achieved = result["achieved_flops"][m]
        rows[m] = {
            "step_time_s": result["step_time_s"][m],
            "tokens_per_s": result["tokens_per_s"][m],
            "achieved_tflops": achieved / 1e12,
            "utilisation_vs_measured_peak": result["utilisation"][m],
            "utilisation_vs_datasheet": achieved / datasheet if datasheet else None,
        }
    out = {
        "device": device_name,
        "precision": precision,
        "model": first.model.name,
        "hardware": first.hardware.name,
        "datasheet_peak_tflops": datasheet / 1e12 if datasheet else None,
        "measured_matmul_peak_tflops": result["matmul_peak_flops"] / 1e12,
        "batch": result["batch"],
        "methods": rows,
        "lora_vs_full_step_time": result.get("lora_vs_full"),
        "qlora_vs_lora_step_time": result.get("qlora_vs_lora"),
        "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
        "raw": result,
    }
    path = Path(args.results) / "bench-gpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"{device_name} ({precision}), {first.model.name}, batch {result['batch']['sequences']} x "
        f"{result['batch']['width']} tokens; matmul peak {out['measured_matmul_peak_tflops']:.1f} "
        f"TFLOP/s measured"
        + (
            f", {out['datasheet_peak_tflops']:g} datasheet ({first.hardware.name})"
            if datasheet
            else ", no datasheet (no conf/hardware entry matches this GPU)"
        )
    )
    print(
        f"{'method':8} {'step s':>8} {'tokens/s':>10} {'TFLOP/s':>8} {'util/meas':>9} {'util/sheet':>10}"
    )
    for m, r in rows.items():
        sheet = r["utilisation_vs_datasheet"]
        print(
            f"{m:8} {r['step_time_s']:8.4f} {r['tokens_per_s']:10.0f} {r['achieved_tflops']:8.2f} "
            f"{r['utilisation_vs_measured_peak']:9.3f} {'-' if sheet is None else f'{sheet:.3f}':>10}"
        )
    for key in ("lora_vs_full_step_time", "qlora_vs_lora_step_time"):
        if out[key] is not None:
            print(f"{key}: {out[key]:.3f}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
