"""CUDA's allocator peak per method, beside the plan's memory estimate of the same config.

Each method's model is built alone (bench/steps.py's `build`: the project's loading and
adapters; QLoRA's base in bitsandbytes NF4) and trains a few steps on bench/steps.py's fixed
batch (the config's train.batch_size examples, padded as a trial pads them) under the trial's
autocast. Its peak is `torch.cuda.max_memory_allocated()` since a reset
just before it was built, less what was allocated then. Beside it: the plan's uncalibrated
estimate (`ftsweep.planning.plan.estimate`) for the same config on the GPU's hardware, and

    memory_ratio = measured peak / (estimate - its runtime term)

since the allocator does not count the CUDA context the runtime term stands for (the same
ratio `ftsweep.planning.fit` takes from a measured run). Full fine-tuning runs as plain torch
AdamW here, so it is configured and estimated at ZeRO stage 0.
"""

from __future__ import annotations

import gc

from bench.common import log

STEPS = 3  # AdamW allocates its states on the first step; the peak is reached by the second


def memory_configs(model: str, methods, overrides: list[str]) -> dict:
    """One config per method at the config's own batch (train.batch_size, 4 unless an override
    says otherwise): the batch `ftsweep plan` sizes, so the measured ratio applies to its plan."""
    from bench.gpu import plain_configs

    return plain_configs(model, None, methods, overrides)


def peak_gb(cfg, steps: int = STEPS) -> float:
    """CUDA's allocator peak, in GB, of building cfg's model and training it `steps` steps."""
    import torch

    from bench.steps import build, fixed_batch, train_step

    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    batch = fixed_batch(cfg, "cuda")
    model, optimizer = build(cfg, "cuda")
    for _ in range(steps):
        train_step(model, optimizer, batch, "cuda", cfg.train.precision)
    peak = torch.cuda.max_memory_allocated() - before
    del model, optimizer, batch
    gc.collect()
    torch.cuda.empty_cache()
    return peak / 1e9


def plan_estimate(cfg, hardware):
    """The plan's estimate for cfg's trial on `hardware`, before any calibration."""
    from ftsweep.planning.plan import DEFAULT_WORKLOAD, estimate, settings_for

    return estimate(
        settings_for(cfg, cfg.train.precision, DEFAULT_WORKLOAD),
        hardware,
        cfg.method.name,
        num_gpus=1,
        zero_stage=getattr(cfg.method, "zero_stage", None),
        offload=getattr(cfg.method, "offload", False),
    )


def measure(configs: dict, hardware) -> dict:
    """Per method: measured peak, the plan's estimate, their ratio and the settings measured."""
    from ftsweep.planning.gpu_check import MEMORY_MATCH_KEYS

    out = {}
    for name, cfg in configs.items():
        log(f"memory: {name}")
        measured = peak_gb(cfg)
        option = plan_estimate(cfg, hardware)
        runtime = option.breakdown_gb.get("runtime", 0.0)
        model_part = option.est_peak_gb_per_gpu - runtime
        out[name] = {
            "peak_mem_gb": measured,
            "plan_peak_gb": option.est_peak_gb_per_gpu,
            "plan_runtime_gb": runtime,
            "memory_ratio": measured / model_part if model_part > 0 else None,
            # what the plan must match for the ratio to apply (ftsweep.planning.gpu_check)
            "settings": {key: getattr(option, key, None) for key in MEMORY_MATCH_KEYS},
        }
    return out
