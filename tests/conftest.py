"""Shared fixtures: the real config, shrunk to the tiny random model and a temporary store."""

from __future__ import annotations

import os
import subprocess

import pytest

# Tests run on CPU; DeepSpeed otherwise probes for accelerators it cannot use here.
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that turn the default config into a seconds-long trial."""
    return [
        "model=tiny-llama",
        f"results_dir={tmp_path}",
        "train.max_steps=2",
        "train.log_every=1",
        "train.batch_size=4",
        "train.max_new_tokens=8",
        "train.forgetting_windows=4",
        "data.num_train=16",
        "data.num_eval=4",
        "data.num_test=4",
    ]


@pytest.fixture
def output_when_done():
    """Waits for a sweep subprocess and returns its output; a hung sweep fails the test with
    the end of what it printed."""

    def wait(proc: subprocess.Popen, what: str, timeout_s: int = 600) -> str:
        try:
            return proc.communicate(timeout=timeout_s)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{what} did not finish:\n{proc.communicate()[0][-4000:]}")

    return wait


@pytest.fixture
def tiny_config(tiny_overrides):
    from ftsweep.config import compose

    def make(*extra: str):
        return compose([*tiny_overrides, *extra])

    return make


def cpu_price_per_hour() -> float:
    """What conf/hardware/cpu.yaml charges per device-hour (the fake runs' hardware)."""
    from ftsweep.planning.cost import load_hardware

    return load_hardware("cpu").price_per_device_hour


# --- MLflow stores the report and adapter tests read -------------------------------------------

# (method, lora_r, lora_alpha, targets, learning_rate, seed, quality, cost_usd, status, stop_reason)
FAKE_RUNS = [
    ("full", None, None, None, 1e-5, 0, 0.80, 0.0100, "FINISHED", "completed"),
    ("full", None, None, None, 1e-4, 0, 0.84, 0.0110, "FINISHED", "completed"),
    ("lora", 8, 16, "all-linear", 1e-4, 0, 0.815, 0.0020, "FINISHED", "completed"),
    ("lora", 8, 16, "all-linear", 1e-4, 1, 0.835, 0.0021, "FINISHED", "completed"),
    ("lora", 16, 32, "all-linear", 1e-4, 0, 0.835, 0.0025, "FINISHED", "completed"),
    ("lora", 16, 16, "all-linear", 1e-4, 0, 0.78, 0.0026, "FINISHED", "completed"),
    ("lora", 4, 8, "attention", 1e-3, 0, 0.70, 0.0015, "FINISHED", "completed"),
    ("qlora", 8, 16, "all-linear", 1e-4, 0, 0.80, 0.0030, "FINISHED", "completed"),
    ("lora", 64, 128, "all-linear", 1e-4, 0, 0.99, 0.0001, "FAILED", "oom"),
    ("lora", 32, 64, "all-linear", 3e-3, 0, 0.99, 0.0001, "FINISHED", "early_stopped"),
]


def _fake_adapter(base_path: str, out, r: int, alpha: int, targets: str, seed: int):
    """A peft adapter on tiny-llama with random (non-zero) B matrices, so merging changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftsweep.methods.lora import TARGET_PRESETS

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(
        base,
        LoraConfig(
            r=r, lora_alpha=alpha, target_modules=TARGET_PRESETS[targets], task_type="CAUSAL_LM"
        ),
    )
    generator = torch.Generator().manual_seed(1000 + seed + r)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(out)
    return out


def log_fake_run(client, experiment_id, spec, adapter_dir=None, error=None):
    """One run as `ftsweep.trial` records it, with the given knobs and numbers."""
    from mlflow.entities import Metric, Param

    from ftsweep.tracking.record import (
        TAG_ERROR,
        TAG_METHOD,
        TAG_STOP_REASON,
        TAG_SWEEP,
        TAG_TRIAL_ID,
    )

    method, r, alpha, targets, lr, seed, quality, cost, status, stop_reason = spec
    name = (
        f"{method} r{r} a{alpha} {targets} lr{lr:.0e} s{seed}"
        if r
        else f"{method} zero2 lr{lr:.0e} s{seed}"
    )
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            TAG_SWEEP: "fake",
            TAG_TRIAL_ID: f"{method}-{r}-{alpha}-{lr}-{seed}",
            TAG_METHOD: method,
        },
    )
    params = {
        "method": method,
        "learning_rate": lr,
        "model": "tiny-llama",
        "data": "format",
        "hardware": "cpu",
    }
    params |= {
        "max_steps": 40,
        "batch_size": 8,
        "grad_accum": 1,
        "seq_len": 128,
        "seed": seed,
        "precision": "fp32",
    }
    if r:
        params |= {
            "lora_r": r,
            "lora_alpha": float(alpha),
            "lora_dropout": 0.0,
            "target_modules": targets,
        }
    else:
        params |= {"zero_stage": 2, "offload": False}
    wall = cost / cpu_price_per_hour() * 3600
    metrics = {
        "cost_usd": cost,
        "wall_time_s": wall,
        "train_time_s": wall * 0.8,
        "eval_loss": 2.0 - quality,
    }
    metrics |= {"tokens_per_s": 500.0, "peak_mem_gb": 1.5, "trainable_params": (r or 400) * 8192}
    metrics["tokens_trained"] = metrics["tokens_per_s"] * metrics["train_time_s"]
    metrics |= {"artifact_mb": 0.1 * r if r else 25.0}
    if status == "FINISHED" and stop_reason == "completed":
        metrics["quality"] = quality
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, float(v), 0, 40) for k, v in metrics.items()],
    )
    if adapter_dir is not None:
        client.log_artifacts(run.info.run_id, str(adapter_dir), artifact_path="adapter")
    client.set_tag(run.info.run_id, TAG_STOP_REASON, stop_reason)
    if error:
        client.set_tag(run.info.run_id, TAG_ERROR, error)
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture(scope="session")
def fake_store(tmp_path_factory):
    """A store with hand-made numbers: experiment `fake` (every method, a failed and an early-stopped
    run, real peft adapters on tiny-llama), `fake-lora` (LoRA only), `fake-full` (one full run) and `empty` (no runs).
    Returns (tracking uri, {spec index: run id})."""
    from ftsweep.models.builtin import resolve_model_path
    from ftsweep.tracking.store import ensure_experiment, get_client

    root = tmp_path_factory.mktemp("fake-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = get_client(uri)
    base_path = resolve_model_path("builtin:tiny-llama")
    ids = {}
    experiment = ensure_experiment(client, "fake", root / "mlartifacts")
    for index, spec in enumerate(FAKE_RUNS):
        method, r, alpha, targets, _lr, seed, *_ = spec
        adapter = None
        if r and spec[8] == "FINISHED" and spec[9] == "completed":
            adapter = _fake_adapter(base_path, root / f"adapter-{index}", r, alpha, targets, seed)
        error = "OutOfMemoryError: CUDA out of memory" if spec[8] == "FAILED" else None
        ids[index] = log_fake_run(client, experiment, spec, adapter, error)
    lora_only = ensure_experiment(client, "fake-lora", root / "mlartifacts")
    for spec in FAKE_RUNS[2:5]:
        log_fake_run(client, lora_only, spec)
    log_fake_run(client, ensure_experiment(client, "fake-full", root / "mlartifacts"), FAKE_RUNS[0])
    ensure_experiment(client, "empty", root / "mlartifacts")
    return uri, ids


@pytest.fixture(scope="session")
def trial_store(tmp_path_factory):
    """Real tiny trials: 1 full, 3 LoRA (ranks 4 and 8, two seeds at 8) and 1 QLoRA, in
    experiment `tiny`. About a minute on 2 cores; tests that use it are marked slow.
    Returns (tracking uri, results folder)."""
    from ftsweep.config import compose
    from ftsweep.trial.run import run_trial

    root = tmp_path_factory.mktemp("trial-store")
    base = [
        "model=tiny-llama",
        "sweep.name=tiny",
        f"results_dir={root}",
        "train.max_steps=4",
        "train.log_every=2",
        "train.batch_size=4",
        "train.max_new_tokens=8",
        "train.forgetting_windows=4",
        "data.num_train=16",
        "data.num_eval=8",
        "data.num_test=8",
    ]
    for extra in (
        ["method=full"],
        ["method=lora", "method.lora_r=4", "method.lora_alpha=8"],
        ["method=lora", "method.lora_r=8", "method.lora_alpha=16", "method.learning_rate=1e-2"],
        [
            "method=lora",
            "method.lora_r=8",
            "method.lora_alpha=16",
            "method.learning_rate=1e-2",
            "train.seed=1",
        ],
        ["method=qlora", "method.lora_r=8", "method.lora_alpha=16"],
    ):
        run_trial(compose([*base, *extra]))
    return f"sqlite:///{root / 'mlflow.db'}", root
