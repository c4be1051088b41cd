"""The base model, untrained, on the sweep's task: the bar every fine-tuned run must clear.

Recorded once per sweep as its own MLflow run (param `method=none`), so every run's lift over
the base model can be read beside it. The run is found again by a trial id derived from what
it measures (model, task, evaluation settings), so a resumed sweep does not measure it twice.
"""

from __future__ import annotations

import time

from ftsweep.config import Config
from ftsweep.tracking.record import TrialRun, inputs_params
from ftsweep.trial.identity import stable_id
from ftsweep.trial.outcome import error_text, outcome_of

BASELINE_METHOD = "none"
BASELINE_RUN_NAME = "base model"


def baseline_params(cfg: Config, resolve: bool = True) -> dict:
    """What the base model's score depends on: the model, the data and how replies are scored
    (the same inputs every trial of the sweep records), and the precision it ran in; `resolve`
    as in `inputs_params`."""
    return {
        "method": BASELINE_METHOD,
        **inputs_params(cfg, resolve),
        "hardware": cfg.hardware.name,
        "seq_len": cfg.train.seq_len,
        "precision": cfg.train.precision,
    }


def baseline_trial_id(cfg: Config) -> str:
    return stable_id(
        BASELINE_METHOD, {"sweep": cfg.sweep.name} | baseline_params(cfg, resolve=False)
    )


def record_baseline(cfg: Config, invocation_id: str = "baseline") -> dict[str, float]:
    """Measure (or find, when already recorded) the base model's quality; returns its metrics."""
    run = TrialRun(
        cfg, baseline_trial_id(cfg), BASELINE_RUN_NAME, invocation_id, params=baseline_params(cfg)
    )
    if run.already_finished:
        return run.recorded_metrics()
    try:
        metrics = _measure(cfg, run)
    except BaseException as exc:
        status, reason = outcome_of(exc)
        run.finish(status, reason, error_text(exc))
        raise
    run.log_metrics(metrics, step=0)
    run.finish("FINISHED", "completed")
    return metrics


def _measure(cfg: Config, run: TrialRun) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    import torch

    from ftsweep.data.forgetting import NO_QUANTIZATION, forgetting_metrics, window_losses
    from ftsweep.methods.loading import compute_precision, load_base_model
    from ftsweep.planning.cost import trial_cost_usd
    from ftsweep.trial.recipe import prepare_inputs, score_and_log_examples

    started = time.perf_counter()
    inputs = prepare_inputs(cfg)
    # The base as published: not quantized, whichever methods the sweep compares.
    model = load_base_model(cfg, inputs.model_path, quantized=False)
    if torch.cuda.is_available():
        model = model.to("cuda")
    with tempfile.TemporaryDirectory(prefix="ftsweep-baseline-") as workdir, compute_precision(cfg):
        scores = score_and_log_examples(cfg, model, inputs, run, Path(workdir))
        general = window_losses(model, windows=inputs.general_windows)
    wall_time_s = time.perf_counter() - started
    return {
        **scores,
        # Nothing was trained: against itself, forgetting is 0 with an interval of [0, 0].
        **forgetting_metrics(general, general),
        **NO_QUANTIZATION,
        "wall_time_s": wall_time_s,
        "cost_usd": trial_cost_usd(cfg, wall_time_s),
        "trainable_params": 0,
    }
