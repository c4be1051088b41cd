"""`make gpu-check` without a GPU: what it writes, how the plan reads it, how it names GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.gpu import guess_hardware
from bench.gpu_check import build_report, summary_markdown
from ftsweep.config import compose
from ftsweep.methods import get_method
from ftsweep.planning.cost import hardware_names, load_hardware
from ftsweep.planning.gpu_check import FILE_NAME, read_gpu_check
from ftsweep.planning.plan import DEFAULT_WORKLOAD, estimate, estimate_trial, plan, settings_for

ROOT = Path(__file__).resolve().parent.parent
CHECKED, OTHER = "h100", "l4"  # the GPU kind a check measured, and one it did not
MODEL = "smollm2-135m"


def _device(hardware: str | None = CHECKED) -> dict:
    """What bench.gpu_check.describe_device reports of a GPU."""
    return {
        "name": "NVIDIA H100 80GB HBM3",
        "memory_gb": 85.0,
        "count": 1,
        "precision": "bf16",
        "hardware": hardware,
        "datasheet_peak_tflops": load_hardware(hardware).peak_tflops if hardware else None,
        "torch": "2.13.0",
        "cuda": "12.8",
    }


def _bench(mfu: dict[str, float], hardware: str = CHECKED) -> dict:
    """What bench.gpu writes, with each method's FLOP/s at `mfu` of the datasheet peak."""
    peak = load_hardware(hardware).peak_tflops
    return {
        "model": MODEL,
        "batch": {"sequences": 32, "width": 160, "positions": 5120, "real_tokens": 4000},
        "measured_matmul_peak_tflops": 0.8 * peak,
        "methods": {
            name: {
                "tokens_per_s": 1e5,
                "step_time_s": 0.04,
                "achieved_tflops": share * peak,
                "utilisation_vs_measured_peak": share / 0.8,
            }
            for name, share in mfu.items()
        },
    }


def _memory(monkeypatch, peaks: dict[str, float], extra: tuple[str, ...] = ()) -> dict:
    """What bench/gpu_memory.py measures, its CUDA peaks replaced by `peaks`."""
    import bench.gpu_memory as gpu_memory

    configs = gpu_memory.memory_configs(
        MODEL, list(peaks), ["train.precision=bf16", f"hardware={CHECKED}", *extra]
    )
    monkeypatch.setattr(gpu_memory, "peak_gb", lambda cfg: peaks[cfg.method.name])
    return gpu_memory.measure(configs, load_hardware(CHECKED))


def _write_check(folder: Path, device: dict, bench: dict | None, memory: dict | None) -> dict:
    report = build_report(device, MODEL, None, bench, memory, {}, seconds=300.0)
    (folder / FILE_NAME).write_text(json.dumps(report))
    (folder / "gpu-check.md").write_text(summary_markdown(report))
    return report


def _default_optimizer() -> str | None:
    """Full fine-tuning's optimizer as configured by default, where options name one."""
    return getattr(compose(["method=full"]).method, "optimizer", None)


def _option(options, method: str, gpu: str, zero_stage=None, optimizer=None):
    """The method's one-GPU option on `gpu` (with the default optimizer unless told), without
    its `cheapest` flag (which moves when another GPU's estimate does)."""
    optimizer = optimizer or _default_optimizer()
    (found,) = [
        o
        for o in options
        if (o.method, o.gpu, o.num_gpus, o.zero_stage) == (method, gpu, 1, zero_stage)
        and not o.offload
        and getattr(o, "optimizer", None) in (None, optimizer)
    ]
    return replace(found, cheapest=False)


def _plan(folder: Path, *overrides: str, **kwargs):
    return plan(compose([f"model={MODEL}", f"results_dir={folder}", *overrides]), **kwargs)


# --- the round trip ---------------------------------------------------------------------------


def test_what_gpu_check_writes_the_plan_reads_back(tmp_path, monkeypatch):
    mfu = {"full": 0.35, "lora": 0.25}
    memory = _memory(monkeypatch, {"full": 2.5, "lora": 0.9})
    report = _write_check(tmp_path, _device(), _bench(mfu), memory)

    check = read_gpu_check(tmp_path)
    assert check is not None
    assert (check.hardware, check.model, check.precision) == (CHECKED, MODEL, "bf16")
    assert set(check.methods) == set(mfu)
    for name, share in mfu.items():
        assert check.methods[name].mfu == pytest.approx(share)
        assert check.methods[name].memory_ratio == pytest.approx(memory[name]["memory_ratio"])
        assert check.methods[name].settings == memory[name]["settings"]
    summary = (tmp_path / "gpu-check.md").read_text()
    assert report["device"] in summary and f"conf/hardware/{CHECKED}.yaml" in summary
    rows = {line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ")}
    assert set(mfu) <= rows


def test_a_gpu_without_a_datasheet_is_reported_and_calibrates_nothing(tmp_path):
    _write_check(tmp_path, _device(hardware=None), _bench({"lora": 0.3}), None)
    assert json.loads((tmp_path / FILE_NAME).read_text())["methods"]["lora"]["mfu"] is None
    assert read_gpu_check(tmp_path) is None
    assert "no datasheet" in (tmp_path / "gpu-check.md").read_text()


def test_without_cuda_gpu_check_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", f"results_dir={out}"],
        cwd=ROOT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),  # no device, on any machine
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert len(said) == 1 and "no CUDA device" in said[0], said
    assert not out.exists()


def test_the_check_runs_its_stages_writes_what_they_measured_and_fails_with_the_tests(
    tmp_path, monkeypatch, capsys
):
    # The stages that need a GPU replaced by what they report; the rest as it runs there.
    import torch

    import bench.common
    import bench.gpu_check as gpu_check
    import bench.gpu_memory as gpu_memory
    from ftsweep.methods import method_names

    methods = list(method_names())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # (its package versions: bitsandbytes first imported while CUDA seems present breaks)
    monkeypatch.setattr(bench.common, "environment", lambda: {})
    monkeypatch.setattr(gpu_check, "describe_device", lambda overrides: _device())
    monkeypatch.setattr(gpu_check, "run_bench", lambda *a: _bench(dict.fromkeys(methods, 0.3)))
    monkeypatch.setattr(gpu_memory, "peak_gb", lambda cfg: 1.0)
    outcome = {"returncode": 0, "timed_out": False, "seconds": 60.0, "passed": 5, "skipped": []}
    monkeypatch.setattr(gpu_check, "run_gpu_tests", lambda: dict(outcome))

    assert gpu_check.main([f"results_dir={tmp_path}"]) == 0
    report = json.loads((tmp_path / FILE_NAME).read_text())
    assert report["errors"] == {} and set(report["methods"]) == set(methods)
    assert all(m["memory_ratio"] and m["mfu"] for m in report["methods"].values())
    assert set(read_gpu_check(tmp_path).methods) == set(methods)
    assert "gpu-check: NVIDIA H100" in (tmp_path / "gpu-check.md").read_text()

    outcome["returncode"] = 1  # a GPU test failed: the figures are still written
    (tmp_path / FILE_NAME).unlink()
    assert gpu_check.main([f"results_dir={tmp_path}"]) == 1
    assert json.loads((tmp_path / FILE_NAME).read_text())["tests"]["returncode"] == 1


# --- what the plan takes from it ----------------------------------------------------------------


def test_measured_mfu_sets_the_speed_of_the_checked_gpu_model_and_precision_only(tmp_path):
    before = _plan(tmp_path, hardware=[CHECKED, OTHER])
    mfu = {"lora": 0.3, "qlora": 0.2}
    _write_check(tmp_path, _device(), _bench(mfu), None)
    after = _plan(tmp_path, hardware=[CHECKED, OTHER])

    cfg = compose([f"model={MODEL}", f"results_dir={tmp_path}"])
    settings = replace(settings_for(cfg, cfg.train.precision, DEFAULT_WORKLOAD), precision="bf16")
    for name, share in mfu.items():
        # the plan's compute runs at hardware.mfu x the method's speed factor: that product is
        # what was measured
        hardware = load_hardware(CHECKED).model_copy(
            update={"mfu": share / get_method(name).speed_factor}
        )
        expected = estimate(settings, hardware, name)
        option = _option(after, name, CHECKED)
        assert option.est_tokens_per_s == pytest.approx(expected.est_tokens_per_s)
        assert option.est_tokens_per_s != pytest.approx(
            _option(before, name, CHECKED).est_tokens_per_s
        )
        assert "gpu-check" in option.calibrated
        assert _option(after, name, OTHER) == _option(before, name, OTHER)
    # a method the check did not measure keeps its estimate
    assert _option(after, "full", CHECKED, zero_stage=0) == _option(
        before, "full", CHECKED, zero_stage=0
    )
    # another precision or another model on the checked GPU is not what was measured
    assert _plan(tmp_path, hardware=[CHECKED], precision="fp16") == _plan(
        tmp_path / "none", hardware=[CHECKED], precision="fp16"
    )
    assert _plan(tmp_path, "model=tiny-llama", hardware=[CHECKED]) == _plan(
        tmp_path / "none", "model=tiny-llama", hardware=[CHECKED]
    )


def test_measured_memory_applies_where_batch_and_adapter_settings_match(tmp_path, monkeypatch):
    before = _plan(tmp_path, hardware=[CHECKED, OTHER])
    peaks = {"full": 2.5, "lora": 0.9}
    _write_check(tmp_path, _device(), None, _memory(monkeypatch, peaks))
    after = _plan(tmp_path, hardware=[CHECKED, OTHER])

    for name, zero_stage in (("full", 0), ("lora", None)):
        option = _option(after, name, CHECKED, zero_stage)
        # calibrated by its own measurement, the estimate is what CUDA's allocator saw plus
        # the runtime term the allocator does not count
        assert option.est_peak_gb_per_gpu == pytest.approx(
            peaks[name] + option.breakdown_gb["runtime"], abs=2e-3
        )
        assert "memory x" in option.calibrated
        assert _option(after, name, OTHER, zero_stage) == _option(before, name, OTHER, zero_stage)
    qlora = ("qlora", CHECKED)
    assert _option(after, *qlora) == _option(before, *qlora)
    # where options name their optimizer, one the check did not measure keeps its estimate
    others = {getattr(o, "optimizer", None) for o in after} - {None, _default_optimizer()}
    for optimizer in others:
        full = ("full", CHECKED, 0, optimizer)
        assert _option(after, *full) == _option(before, *full), optimizer

    # another batch size, or another rank: the ratio measured does not carry
    for overrides in (["train.batch_size=8"], ["method.lora_r=8"]):
        calibrated = _option(_plan(tmp_path, *overrides, hardware=[CHECKED]), "lora", CHECKED)
        plain = _option(_plan(tmp_path / "none", *overrides, hardware=[CHECKED]), "lora", CHECKED)
        assert calibrated.est_peak_gb_per_gpu == plain.est_peak_gb_per_gpu, overrides


def test_a_trials_estimate_is_calibrated_by_the_check_in_its_results_folder(tmp_path, monkeypatch):
    trial = [f"model={MODEL}", "method=lora", f"hardware={CHECKED}", "train.precision=bf16"]
    before = estimate_trial(compose([*trial, f"results_dir={tmp_path}"]))
    _write_check(tmp_path, _device(), _bench({"lora": 0.3}), _memory(monkeypatch, {"lora": 0.9}))
    after = estimate_trial(compose([*trial, f"results_dir={tmp_path}"]))
    assert after.est_peak_gb_per_gpu == pytest.approx(0.9 + after.breakdown_gb["runtime"], abs=2e-3)
    assert after.est_tokens_per_s != pytest.approx(before.est_tokens_per_s)


@pytest.mark.parametrize(
    "text", ["{not json", json.dumps({"format": "another/9", "hardware": CHECKED})]
)
def test_a_gpu_check_file_that_cannot_be_read_is_ignored_with_one_line(tmp_path, capsys, text):
    before = _plan(tmp_path, hardware=[CHECKED])
    capsys.readouterr()
    (tmp_path / FILE_NAME).write_text(text)
    assert _plan(tmp_path, hardware=[CHECKED]) == before
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and FILE_NAME in said[0] and "ignored" in said[0], said


# --- which datasheet a GPU's name gets ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "memory_gb", "hardware"),
    [
        ("NVIDIA H100 80GB HBM3", 85.0, "h100"),
        ("NVIDIA H100 PCIe", 85.0, None),  # another part, another peak
        ("NVIDIA H100 NVL", 100.0, None),
        ("NVIDIA A100-SXM4-80GB", 85.1, "a100-80gb"),
        ("NVIDIA A100-PCIE-40GB", 42.4, "a100-40gb"),
        ("NVIDIA L4", 24.0, "l4"),
        ("NVIDIA L40S", 48.0, None),  # not an L4
        ("Tesla T4", 15.8, "t4"),
        ("NVIDIA H200", 150.0, None),
    ],
)
def test_a_gpu_is_matched_to_its_datasheet_by_whole_words(name, memory_gb, hardware):
    assert guess_hardware(name, memory_gb) == hardware


def test_every_guessed_datasheet_is_a_gpu_entry_of_the_catalog():
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "Tesla T4"]
    guesses = {guess_hardware(n, 80.0) for n in names} | {guess_hardware("NVIDIA A100", 40.0)}
    assert guesses <= set(hardware_names())
    assert all(load_hardware(g).device == "cuda" for g in guesses)
