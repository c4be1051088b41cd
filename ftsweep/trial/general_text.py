"""A trial's losses on general text before it trains: what its forgetting is measured from.

Every method is measured against the same unquantised base. For most methods that is the model
as built, before any step (LoRA's adapters start at zero, so they change nothing). A method whose
base loads quantised (`Method.quantized`, QLoRA's NF4) is measured against the unquantised base
instead, loaded on its own and let go before the quantised one loads, so its forgetting includes
what quantising cost and `quantization_loss` records that part alone.
"""

from __future__ import annotations

from ftsweep.config import Config
from ftsweep.data.forgetting import (
    NO_QUANTIZATION,
    WindowLosses,
    quantization_metrics,
    window_losses,
)


def unquantised_base_losses(cfg: Config, model_path: str, windows: list) -> WindowLosses | None:
    """The unquantised base's losses, for a method that quantises its base; None for the others,
    whose model before training is that base."""
    if not cfg.method.spec.quantized:
        return None
    import gc

    import torch

    from ftsweep.methods.loading import load_base_model

    model = load_base_model(cfg, model_path, quantized=False)
    if torch.cuda.is_available():
        model = model.to("cuda")  # where the quantised base will sit
    losses = window_losses(model, windows=windows)
    del model
    gc.collect()  # the quantised base loads next: this copy must be gone by then
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return losses


def losses_before_training(
    model, windows: list, unquantised: WindowLosses | None
) -> tuple[WindowLosses, dict[str, float]]:
    """(the losses forgetting is measured from, the quantisation metrics) for the model as
    built: itself, or the `unquantised` base's losses when its base is quantised, with what
    quantising cost against them."""
    built = window_losses(model, windows=windows)
    if unquantised is None:
        return built, dict(NO_QUANTIZATION)
    return unquantised, quantization_metrics(built, unquantised)
