"""FLOP accounting: the FLOPs of a training step, and a matrix-product peak to hold them against.

flop_utilisation = achieved training FLOP/s / the matrix-product peak measured in the same run
(bench/steps.py times both alternately). The FLOPs of a step come from the project's own
formula (each method's `flops_per_token`, nanoGPT's 6N + 12·L·h·T for full fine-tuning, 4N plus
the adapters' 6 per parameter for LoRA), counted over every position the step computes: batch
x padded width, since padding is computed too.
"""

from __future__ import annotations

import time


def matmul_peak(n: int = 2048, reps: int = 5, dtype: str = "fp32", device: str = "cpu") -> float:
    """FLOP/s of the fastest of `reps` n x n matrix products (2n^3 FLOPs each)."""
    import torch

    from ftsweep.methods.loading import dtype_of

    kind = dtype_of(dtype)
    a = torch.randn(n, n, dtype=kind, device=device)
    b = torch.randn(n, n, dtype=kind, device=device)
    out = torch.empty(n, n, dtype=kind, device=device)
    torch.mm(a, b, out=out)  # warm-up: thread pool, kernels, caches
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def step_flops(cfg, positions: int, width: int) -> float:
    """FLOPs of one training step of cfg's method over `positions` (batch x width) positions."""
    from ftsweep.planning.memory import adapter_params
    from ftsweep.planning.settings import adapter_of

    arch = cfg.model.architecture
    adapters = adapter_params(arch, adapter_of(cfg)) if cfg.method.spec.trains_adapter() else 0
    return cfg.method.spec.flops_per_token(arch, width, adapters) * positions
