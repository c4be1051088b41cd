"""The HF Trainer as a trial runs it: its arguments, divergence checks, and progress reports."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from ftsweep.config import Config
from ftsweep.trial.outcome import TrialDiverged

Reporter = Callable[[dict], None]


def progress_callback(run, report: Reporter | None, counter):
    """Logs the train loss by step to `run` (None: a rank that records nothing), reports it to
    the scheduler, and stops on divergence."""
    from transformers import TrainerCallback

    def emit(metrics: dict, step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)
        if report is not None:
            report({**metrics, "step": step, "tokens": counter.tokens})

    class ProgressCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is None:
                return
            if not math.isfinite(loss):
                raise TrialDiverged(f"train loss became {loss} at step {state.global_step}")
            emit({"train_loss": loss}, state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            # A checkpoint of the finished training is never resumed from: skip writing it.
            if state.global_step >= args.max_steps:
                control.should_save = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            # Held-out loss at a rung: what ASHA compares, at equal tokens across methods.
            eval_loss = (metrics or {}).get("eval_loss")
            if eval_loss is None or state.global_step >= args.max_steps:
                return
            emit({"eval_loss": eval_loss}, state.global_step)

    return ProgressCallback()


def trainer_class():
    """HF's Trainer, stopping at the first step whose loss is NaN or inf, signing and timing
    each checkpoint it saves.

    Checked after each forward/backward, before the optimizer applies the step: a trial that
    diverges between two log steps stops there, not at the next log.
    """
    import torch
    from transformers import Trainer

    class DivergenceCheckingTrainer(Trainer):
        # Seconds spent writing and signing resumable checkpoints: inside the Trainer's runtime,
        # recorded apart so tokens/s measures training and the save's own cost is visible.
        checkpoint_time_s = 0.0
        # Where each signed checkpoint is also kept, beyond this node (`storage`), or None.
        checkpoint_uri: str | None = None

        def _save_checkpoint(self, model, trial):
            from ftsweep.trial.manifest import sign_saved_checkpoint

            started = time.perf_counter()
            super()._save_checkpoint(model, trial)
            sign_saved_checkpoint(self.args, self.state, self.checkpoint_uri)
            self.checkpoint_time_s += time.perf_counter() - started

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if not bool(torch.isfinite(loss).all()):
                step = self.state.global_step + 1
                raise TrialDiverged(f"train loss became {float(loss)} at step {step}")
            return loss

    return DivergenceCheckingTrainer


def with_precision(ds_config: dict, precision: str) -> dict:
    """The DeepSpeed config with its bf16 and fp16 sections enabled as train.precision says,
    as the Trainer's bf16=/fp16= flags are (a section's other settings, such as fp16's loss
    scale, are kept)."""
    sections = {
        key: {**ds_config.get(key, {}), "enabled": precision == key} for key in ("bf16", "fp16")
    }
    return {**ds_config, **sections}


def training_arguments(
    cfg: Config, output_dir: str, show_progress: bool, checkpoints: Path | None = None
):
    """HF TrainingArguments for the trial; `checkpoints`: where resumable checkpoints go."""
    import torch
    from transformers import TrainingArguments

    from ftsweep.planning.checkpointing import checkpoint_every_steps

    if checkpoints:
        from ftsweep.trial.checkpoints import prepare_checkpoint_dir

        # Created 0700 inside RESULTS: what is resumed from must be the user's alone.
        prepare_checkpoint_dir(cfg, Path(checkpoints))
    ds = cfg.method.spec.deepspeed_config(cfg.method)
    if ds is not None:
        from ftsweep.trial.deepspeed_ops import load_deepspeed_ops

        load_deepspeed_ops()
        ds = with_precision(ds, cfg.train.precision)
    # the method's optimizer where it names one (full fine-tuning's 8-bit AdamW)
    optim = cfg.method.spec.trainer_optimizer_name(cfg.method)
    return TrainingArguments(
        output_dir=str(checkpoints) if checkpoints else output_dir,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.method.learning_rate,
        weight_decay=cfg.method.weight_decay,
        warmup_steps=int(cfg.method.warmup_ratio * cfg.train.max_steps),
        lr_scheduler_type="linear",
        logging_steps=cfg.train.log_every,
        # HF's default replaces a NaN/inf step loss by the window's average (0 when every step
        # is NaN), which would hide divergence from the callback that stops on it.
        logging_nan_inf_filter=False,
        save_strategy="steps" if checkpoints else "no",
        save_steps=checkpoint_every_steps(cfg) or 500,
        save_total_limit=1,  # resuming needs the latest only
        eval_strategy="steps" if cfg.train.eval_every else "no",
        eval_steps=cfg.train.eval_every,
        report_to="none",
        # A seed varies what a seed should: adapter init and the order of the data (data.seed
        # fixes which examples exist and which are held out).
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        # Mixed precision, one recipe for every method: fp32 master weights and AdamW states
        # (`Method.weights_dtype`), compute autocast to 16 bits (under DeepSpeed: its module cast,
        # from the config's matching sections), fp16's loss scaled by a GradScaler.
        bf16=cfg.train.precision == "bf16",
        fp16=cfg.train.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        deepspeed=ds,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
        **({"optim": optim} if optim else {}),
    )
