"""`make gpu-check`: what the CPU cannot measure, on one CUDA GPU, in one run.

    python -m bench.gpu_check [results_dir=DIR] [batch=32] [rounds=10] [tests=false]
                              [Hydra overrides for the measured configs: model=, hardware=, ...]

1. No CUDA device: one line, exit 2, nothing written.
2. `pytest -m gpu` (tests/test_gpu.py and the gpu tests of tests/test_precision.py): every
   method through the real trial on CUDA, ZeRO-0/2, NF4, fp16 where the GPU has no bf16,
   per-trial memory, an NCCL ZeRO-3 group where two GPUs exist, two trials sharing one GPU.
3. `python -m bench.gpu` for every registry method, `batch` sequences a step: tokens/s and
   FLOP utilisation against a 16-bit matmul peak measured in the same run and the datasheet
   peak of the GPU's conf/hardware entry (matched by name, bench.gpu.guess_hardware; "no
   datasheet" where none matches).
4. bench/gpu_memory.py: CUDA's allocator peak per method against the plan's estimate, at the
   config's own train.batch_size (what `ftsweep plan` sizes unless told otherwise).
5. DIR/gpu-check.json, which `ftsweep plan` calibrates that GPU kind from
   (ftsweep.planning.gpu_check), and a short DIR/gpu-check.md.

Exit 0 when the tests pass and every measurement ran; 1 otherwise (what was measured is still
written). Importing this module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

if not __package__:  # run as `python bench/gpu_check.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
NO_DEVICE = "gpu-check: no CUDA device (torch.cuda.is_available() is False); nothing to measure"
DEFAULTS = {"results_dir": "results", "batch": "32", "rounds": "10", "tests": "true"}
DEFAULT_MODEL = "smollm2-135m"
# The whole check is meant to take under 8 minutes on one modern GPU: the tests ~4 (about 30
# short trials), the bench and the memory stage ~2, the install the rest. These limits end a
# stage that hangs, and the check goes on to the next.
TESTS_TIMEOUT_S = 390
BENCH_TIMEOUT_S = 150

_started = time.perf_counter()


def say(message: str) -> None:
    elapsed = int(time.perf_counter() - _started)
    print(f"gpu-check [{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(this script's settings, Hydra overrides for the measured configs)."""
    settings, overrides = dict(DEFAULTS), []
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"gpu-check: {item}: expected key=value (results_dir=DIR, ...)")
        if key in DEFAULTS:
            settings[key] = value
        else:
            overrides.append(item)
    return settings, overrides


# --- the device ------------------------------------------------------------------------------


def describe_device(overrides: list[str]) -> dict:
    """The GPU, its precision and the conf/hardware entry holding its datasheet (or None)."""
    import torch

    from bench.gpu import guess_hardware

    props = torch.cuda.get_device_properties(0)
    memory_gb = props.total_memory / 1e9
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("hardware=")]
    hardware = chosen[-1] if chosen else guess_hardware(props.name, memory_gb)
    datasheet = None
    if hardware:
        from ftsweep.planning.cost import load_hardware

        entry = load_hardware(hardware)
        datasheet = entry.peak_tflops if entry.device == "cuda" else None
    return {
        "name": props.name,
        "memory_gb": round(memory_gb, 2),
        "count": torch.cuda.device_count(),
        "precision": "bf16" if torch.cuda.is_bf16_supported() else "fp16",
        "hardware": hardware if datasheet else None,
        "datasheet_peak_tflops": datasheet,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def plan_hardware(device: dict, matmul_peak_tflops: float | None):
    """The hardware the plan estimates memory on: the matched entry, else the device itself
    (memory estimates depend only on the device being CUDA; it has no price)."""
    from ftsweep.config import HardwareConfig
    from ftsweep.planning.cost import load_hardware

    if device["hardware"]:
        return load_hardware(device["hardware"])
    return HardwareConfig(
        name="unlisted",
        device="cuda",
        price_per_device_hour=0.0,
        price_source="none: no conf/hardware entry matches this GPU",
        price_date="",
        memory_gb=device["memory_gb"],
        peak_tflops=matmul_peak_tflops or 1.0,
        bf16=device["precision"] == "bf16",
    )


# --- the stages ------------------------------------------------------------------------------


def run_gpu_tests(timeout_s: float = TESTS_TIMEOUT_S) -> dict:
    """`pytest -m gpu`, its output shown as it runs; the outcome of every test."""
    # tests/conftest.py points DeepSpeed at the CPU unless told otherwise
    env = dict(os.environ, DS_ACCELERATOR="cuda")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        report = Path(tmp) / "gpu-tests.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs"]
        # its own process group: on a timeout the trials it started end with it, rather than
        # hold the GPU through the measurements that follow
        tests = subprocess.Popen(
            [*command, f"--junitxml={report}"], cwd=ROOT, env=env, start_new_session=True
        )
        try:
            returncode = tests.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(tests.pid, signal.SIGKILL)
            tests.wait()
            returncode = None
        outcome = read_junit(report) if report.exists() else {}
    return {
        "command": " ".join(command[1:]),
        "returncode": returncode,
        "timed_out": returncode is None,
        "seconds": round(time.perf_counter() - started, 1),
        **outcome,
    }


def read_junit(path: Path) -> dict:
    """Passed count, failed and errored test names, skipped tests with their reasons."""
    passed, failed, errors, skipped = 0, [], [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None:
            failed.append(name)
        elif case.find("error") is not None:
            errors.append(name)
        elif (skip := case.find("skipped")) is not None:
            skipped.append({"test": name, "reason": skip.get("message", "")})
        else:
            passed += 1
    return {"passed": passed, "failed": failed, "errors": errors, "skipped": skipped}


def run_bench(results: Path, settings: dict, methods, overrides: list[str]) -> dict:
    """`python -m bench.gpu` in its own process; its bench-gpu.json."""
    command = [
        sys.executable,
        "-m",
        "bench.gpu",
        "--results",
        str(results),
        "--batch",
        settings["batch"],
        "--rounds",
        settings["rounds"],
        "--methods",
        ",".join(methods),
        *overrides,
    ]
    done = subprocess.run(command, cwd=ROOT, timeout=BENCH_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"python -m bench.gpu exited {done.returncode}")
    return json.loads((results / "bench-gpu.json").read_text())


def run_memory(methods, overrides: list[str], hardware) -> dict:
    from bench.gpu_memory import measure, memory_configs

    configs = memory_configs(DEFAULT_MODEL, methods, overrides)
    return measure(configs, hardware)


# --- what is written -------------------------------------------------------------------------


def build_report(
    device: dict,
    model: str,
    tests: dict | None,
    bench: dict | None,
    memory: dict | None,
    errors: dict[str, str],
    seconds: float,
    environment: dict | None = None,
) -> dict:
    """gpu-check.json: the device, the tests' outcome and, per method, speed, MFU and memory."""
    from ftsweep.planning.gpu_check import FORMAT

    bench, memory = bench or {}, memory or {}
    datasheet = device["datasheet_peak_tflops"]
    methods = {}
    for name in dict.fromkeys([*bench.get("methods", {}), *memory]):
        speed = bench.get("methods", {}).get(name, {})
        achieved = speed.get("achieved_tflops")
        methods[name] = {
            "tokens_per_s": speed.get("tokens_per_s"),
            "step_time_s": speed.get("step_time_s"),
            "achieved_tflops": achieved,
            "mfu_vs_measured_peak": speed.get("utilisation_vs_measured_peak"),
            # the plan's MFU: achieved FLOP/s over the datasheet peak of the hardware entry
            "mfu": achieved / datasheet if achieved is not None and datasheet else None,
            **memory.get(name, {}),
        }
    return {
        "format": FORMAT,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device["name"],
        "device_memory_gb": device["memory_gb"],
        "devices": device["count"],
        "hardware": device["hardware"],
        "datasheet": f"conf/hardware/{device['hardware']}.yaml"
        if device["hardware"]
        else "no datasheet",
        "datasheet_peak_tflops": datasheet,
        "measured_matmul_peak_tflops": bench.get("measured_matmul_peak_tflops"),
        "precision": device["precision"],
        "model": model,
        "batch": bench.get("batch"),
        "methods": methods,
        "tests": tests,
        "errors": errors,
        "seconds": round(seconds, 1),
        "torch": device["torch"],
        "cuda": device["cuda"],
        "environment": environment,
    }


def summary_markdown(report: dict) -> str:
    """gpu-check.md: the same figures, short."""
    sheet = (
        f"{report['datasheet_peak_tflops']:g} TFLOP/s ({report['datasheet']})"
        if report["hardware"]
        else "no datasheet (no conf/hardware entry matches this GPU; nothing calibrates)"
    )
    peak = report["measured_matmul_peak_tflops"]
    batch = report["batch"] or {}
    lines = [
        f"# gpu-check: {report['device']}",
        "",
        f"`make gpu-check`, {report['measured_at']}, {report['seconds']:.0f} s; torch "
        f"{report['torch']}, CUDA {report['cuda']}, {report['precision']}, "
        f"{report['devices']} device(s) of {report['device_memory_gb']:g} GB.",
        "",
        f"- datasheet peak: {sheet}",
        f"- {report['precision']} matmul peak measured: "
        + (f"{peak:.1f} TFLOP/s" if peak else "not measured"),
        f"- GPU tests: {_tests_line(report['tests'])}",
    ]
    tests = report["tests"] or {}
    for name in [*tests.get("failed", []), *tests.get("errors", [])]:
        lines.append(f"  - **failed** {name}")
    for test in tests.get("skipped", []):
        lines.append(f"  - skipped {test['test']}: {test['reason']}")
    for stage, error in report["errors"].items():
        lines.append(f"- **{stage} failed**: {error}")
    measured = next((m["settings"] for m in report["methods"].values() if m.get("settings")), {})
    lines += [
        "",
        f"Per method: {report['model']}. Speed: batch {batch.get('sequences', '?')} x "
        f"{batch.get('width', '?')} tokens (padded); MFU = FLOP/s by the plan's flops_per_token "
        "over the measured peak and over the datasheet's. Memory: batch "
        f"{measured.get('batch_size', '?')}, seq_len {measured.get('seq_len', '?')}; CUDA's "
        "allocator peak over the plan's estimate less its runtime term.",
        "",
        "| method | tokens/s | TFLOP/s | MFU (measured peak) | MFU (datasheet) "
        "| CUDA peak GB | plan GB (less runtime) | measured / plan |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in report["methods"].items():
        plan = m.get("plan_peak_gb")
        runtime = m.get("plan_runtime_gb") or 0.0
        cells = [
            name,
            _fmt(m.get("tokens_per_s"), ".0f"),
            _fmt(m.get("achieved_tflops"), ".1f"),
            _fmt(m.get("mfu_vs_measured_peak"), ".3f"),
            _fmt(m.get("mfu"), ".3f"),
            _fmt(m.get("peak_mem_gb"), ".2f"),
            _fmt(None if plan is None else plan - runtime, ".2f"),
            _fmt(m.get("memory_ratio"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "`ftsweep plan results_dir=...` with this file in the results folder uses the MFU and "
        f"memory ratios above for {report['hardware'] or 'no hardware (none matched)'}, "
        f"{report['model']}, {report['precision']} (memory at the batch, sequence length and "
        "adapter settings measured only); every other GPU kind, model and precision keeps its "
        "estimate.",
    ]
    return "\n".join(lines) + "\n"


def _tests_line(tests: dict | None) -> str:
    if not tests:
        return "not run"
    if tests.get("timed_out"):
        return f"timed out after {tests['seconds']:.0f} s"
    failed = len(tests.get("failed", [])) + len(tests.get("errors", []))
    return (
        f"{tests.get('passed', 0)} passed, {failed} failed, "
        f"{len(tests.get('skipped', []))} skipped in {tests['seconds']:.0f} s "
        f"(exit {tests['returncode']})"
    )


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# --- the check -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    settings, overrides = parse(sys.argv[1:] if argv is None else argv)
    try:
        import torch
    except ImportError:
        print("gpu-check: torch is not installed (run `make install`)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(NO_DEVICE, file=sys.stderr)
        return 2

    from bench.common import environment
    from ftsweep.config import ConfigError
    from ftsweep.methods import method_names

    try:
        device = describe_device(overrides)
    except ConfigError as exc:  # hardware= names no conf/hardware entry
        print(f"gpu-check: {exc}", file=sys.stderr)
        return 2
    model = _last(overrides, "model") or DEFAULT_MODEL
    # what the figures are recorded under: the GPU's precision unless train.precision= says
    device["precision"] = _last(overrides, "train.precision") or device["precision"]
    results = Path(settings["results_dir"])
    results.mkdir(parents=True, exist_ok=True)
    sheet = device["hardware"] or "no datasheet"
    say(
        f"{device['name']} x{device['count']}, {device['memory_gb']:g} GB, "
        f"{device['precision']}, torch {device['torch']} (CUDA {device['cuda']}); "
        f"hardware: {sheet}"
    )
    measured = [f"train.precision={device['precision']}"]
    if device["hardware"] and not any(o.startswith("hardware=") for o in overrides):
        measured.append(f"hardware={device['hardware']}")
    measured += overrides
    methods = list(method_names())
    errors: dict[str, str] = {}

    tests = None
    if settings["tests"].lower() not in ("false", "0", "no"):
        say("1/3 gpu tests: pytest -m gpu")
        tests = run_gpu_tests()
        say(f"gpu tests: {_tests_line(tests)}")
    bench = _stage(
        "bench",
        errors,
        f"2/3 speed and MFU: python -m bench.gpu ({', '.join(methods)})",
        lambda: run_bench(results, settings, methods, measured),
    )
    matmul_peak = (bench or {}).get("measured_matmul_peak_tflops")
    memory = _stage(
        "memory",
        errors,
        "3/3 CUDA peak memory per method against the plan",
        lambda: run_memory(methods, measured, plan_hardware(device, matmul_peak)),
    )

    report = build_report(
        device, model, tests, bench, memory, errors, time.perf_counter() - _started, environment()
    )
    json_path, md_path = results / "gpu-check.json", results / "gpu-check.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    summary = summary_markdown(report)
    md_path.write_text(summary)
    print(summary)
    say(f"written: {json_path}, {md_path}")
    passed = tests is None or tests["returncode"] == 0
    return 0 if passed and not errors else 1


def _last(overrides: list[str], key: str) -> str | None:
    """The value the last `key=` override gives, if any (the last one wins, as in Hydra)."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key]
    return values[-1] if values else None


def _stage(name: str, errors: dict, title: str, run):
    """One measurement; a failure is recorded and shown, and the check goes on."""
    say(title)
    try:
        return run()
    except Exception as exc:
        traceback.print_exc()
        errors[name] = f"{type(exc).__name__}: {exc}"
        say(f"{name} failed: {errors[name]}")
        return None


if __name__ == "__main__":
    sys.exit(main())
