"""One trial: model + method + data -> HF Trainer -> evaluation -> metrics, recorded in MLflow.

`run_trial(cfg)` is a plain function: `ftsweep train` calls it directly, Ray Tune calls it
from the sweep's trainable, and tests call it on a tiny model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ftsweep.config import Config
from ftsweep.tracking.record import (
    TAG_PEAK_MEM_GB,
    TAG_PLAN_PEAK_GB,
    TAG_RESUMED_FROM,
    TrialRun,
    experiment_name,
    run_params,
)

Reporter = Callable[[dict], None]


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrialResult:
    trial_id: str
    run_id: str
    status: str  # FINISHED or FAILED, as in MLflow
    stop_reason: str  # completed, already_recorded, diverged, oom, failed
    metrics: dict[str, float] = field(default_factory=dict)


def stable_id(prefix: str, identity: dict) -> str:
    """`prefix-<hash>`: the same identity always gives the same id, in every process."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:10]}"


def trial_id_for(cfg: Config) -> str:
    """Stable id from what defines the trial: the same config always gives the same id."""
    return stable_id(cfg.method.name, {"sweep": cfg.sweep.name, **run_params(cfg)})


def run_name_for(cfg: Config) -> str:
    m = cfg.method
    parts = [m.name, *m.spec.run_name_parts(m), f"lr{m.learning_rate:.0e}", f"s{cfg.train.seed}"]
    return " ".join(parts)


def stop_reason_for(exc: BaseException) -> str:
    import torch

    if isinstance(exc, TrialDiverged):
        return "diverged"
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return "oom"
    return "failed"


def planned_peak_gb(cfg: Config) -> float | None:
    """The plan's estimate of this trial's peak memory per device, in GB (None without one)."""
    try:
        from ftsweep.planning.plan import estimate_trial

        option = estimate_trial(cfg)
    except Exception:  # an estimate that cannot be made must not hide the failure's record
        return None
    return option and option.est_peak_gb_per_gpu


def failure_peak_gb() -> float:
    """Peak memory when a trial fails: CUDA's allocator peak on a GPU, else the process's peak
    resident memory (the worker's lifetime peak: it may include an earlier trial)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def oom_tags(cfg: Config) -> dict[str, str]:
    """Beside an out-of-memory failure: the plan's estimate and the peak measured at failure."""
    tags = {TAG_PEAK_MEM_GB: f"{failure_peak_gb():.3f}"}
    planned = planned_peak_gb(cfg)
    if planned is not None:
        tags[TAG_PLAN_PEAK_GB] = f"{planned:.3f}"
    return tags


class PeakMemory:
    """Samples the process's resident memory (and CUDA's allocator peak) while training runs."""

    def __init__(self, interval_s: float = 0.2):
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_gb(self) -> float:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 1e9
        return self.peak_bytes / 1e9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def trial_environment(deepspeed: bool):
    """os.environ for one trial, restored as it was when the trial ends.

    A plain process (no launcher) gets the launcher variables DeepSpeed needs; without them it
    falls back to MPI discovery. Restoring matters in a process that runs trial after trial:
    transformers leaves ACCELERATE_USE_DEEPSPEED=true behind, which would send the next LoRA
    trial through DeepSpeed too, and a child process (a sweep started from a notebook or a test)
    would inherit a MASTER_PORT this process still listens on.
    """
    saved = dict(os.environ)
    if deepspeed:
        launcher = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
        }
        os.environ.update({k: v for k, v in launcher.items() if k not in os.environ})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _make_callback(run: TrialRun, report: Reporter | None, counter):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Logs the train loss by step, reports it to the scheduler, and stops on divergence."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is None:
                return
            if not math.isfinite(loss):
                raise TrialDiverged(f"train loss became {loss} at step {state.global_step}")
            run.log_metrics({"train_loss": loss}, step=state.global_step)
            if report is not None:
                report({"train_loss": loss, "step": state.global_step, "tokens": counter.tokens})

        def on_step_end(self, args, state, control, **kwargs):
            # A checkpoint of the finished training is never resumed from: skip writing it.
            if state.global_step >= args.max_steps:
                control.should_save = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            # Held-out loss at a rung: what ASHA compares, at equal tokens across methods.
            eval_loss = (metrics or {}).get("eval_loss")
            if eval_loss is None or state.global_step >= args.max_steps:
                return
            run.log_metrics({"eval_loss": eval_loss}, step=state.global_step)
            if report is not None:
                report(
                    {"eval_loss": eval_loss, "step": state.global_step, "tokens": counter.tokens}
                )

    return ProgressCallback()


def trainer_class():
    """HF's Trainer, stopping at the first step whose loss is NaN or inf.

    Checked after each forward/backward, before the optimizer applies the step: a trial that
    diverges between two log steps stops there, not at the next log.
    """
    import torch
    from transformers import Trainer

    class DivergenceCheckingTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if not bool(torch.isfinite(loss).all()):
                step = self.state.global_step + 1
                raise TrialDiverged(f"train loss became {float(loss)} at step {step}")
            return loss

    return DivergenceCheckingTrainer


class TrainedTokens:
    """Counts the real (non-padding) tokens of the batches the model trained on.

    Counted where the model's training forward pass runs, so batches a data loader fetched
    ahead but never trained on, and evaluation batches, are not counted.
    """

    def __init__(self, model):
        self.tokens = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if module.training and mask is not None:
            self.tokens += int(mask.sum())


def _training_arguments(
    cfg: Config, output_dir: str, show_progress: bool, checkpoints: Path | None = None
):
    """HF TrainingArguments for the trial; `checkpoints`: where resumable checkpoints go."""
    import torch
    from transformers import TrainingArguments

    ds = cfg.method.spec.deepspeed_config(cfg.method)
    if ds is not None:
        from ftsweep.trial.deepspeed_ops import load_deepspeed_ops

        load_deepspeed_ops()
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
        save_steps=cfg.train.checkpoint_every or 500,
        save_total_limit=1,  # resuming needs the latest only
        eval_strategy="steps" if cfg.train.eval_every else "no",
        eval_steps=cfg.train.eval_every,
        report_to="none",
        seed=cfg.train.seed,
        data_seed=cfg.data.seed,
        bf16=cfg.train.precision == "bf16",
        fp16=cfg.train.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        deepspeed=ds,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
    )


def skip_trial(
    cfg: Config, trial_id: str, run_name: str, invocation_id: str, reason: str
) -> TrialResult:
    """Record a trial that was not launched (e.g. over budget), and why."""
    run = TrialRun(cfg, trial_id, run_name, invocation_id)
    if run.already_finished:
        return TrialResult(
            trial_id, run.run_id, "FINISHED", "already_recorded", run.recorded_metrics()
        )
    run.finish("KILLED", "skipped_budget", reason)
    return TrialResult(trial_id, run.run_id, "KILLED", "skipped_budget")


def run_trial(
    cfg: Config,
    trial_id: str | None = None,
    report: Reporter | None = None,
    invocation_id: str = "train",
    show_progress: bool = False,
) -> TrialResult:
    """Train, evaluate and record one configuration. Raises after recording a failure."""
    trial_id = trial_id or trial_id_for(cfg)
    run = TrialRun(cfg, trial_id, run_name_for(cfg), invocation_id)
    if run.already_finished:
        return TrialResult(
            trial_id, run.run_id, "FINISHED", "already_recorded", run.recorded_metrics()
        )
    try:
        metrics = _train_and_evaluate(cfg, run, report, show_progress)
    except SystemExit:
        # Ray Tune ends a trial its scheduler stopped by raising SystemExit inside `report`.
        run.finish("FINISHED", "early_stopped")
        shutil.rmtree(checkpoint_dir(cfg, trial_id), ignore_errors=True)
        raise
    except KeyboardInterrupt as exc:
        run.finish("KILLED", "interrupted", f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        reason = stop_reason_for(exc)
        tags = oom_tags(cfg) if reason == "oom" else None
        run.finish("FAILED", reason, f"{type(exc).__name__}: {exc}", tags=tags)
        raise
    finally:
        _release_memory()
    run.finish("FINISHED", "completed")
    return TrialResult(trial_id, run.run_id, "FINISHED", "completed", metrics)


def _release_memory() -> None:
    """A sweep's worker process runs trial after trial: leave nothing of this one to the next."""
    import gc

    import torch
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # accelerate keeps its state per process: after a DeepSpeed trial, the next LoRA trial's
    # Trainer would otherwise run through DeepSpeed too.
    AcceleratorState._reset_state(reset_partial_state=True)
    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class TrialInputs:
    """What a trial trains and evaluates on, built the same way in every process that trains."""

    model_path: str
    tokenizer: object
    task: object
    eval_examples: list
    train_set: object
    eval_set: object


def prepare_inputs(cfg: Config) -> TrialInputs:
    """Threads and seed set; tokenizer loaded; the task's examples split and tokenized."""
    import torch
    from transformers import AutoTokenizer, set_seed

    from ftsweep.data.tokenize import TokenizedDataset
    from ftsweep.models.builtin import resolve_model_path
    from ftsweep.data.tasks import get_task

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    set_seed(cfg.train.seed)
    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    task = get_task(cfg.data)
    train_examples, eval_examples = task.split(cfg.data.num_train, cfg.data.num_eval, cfg.data.seed)
    return TrialInputs(
        model_path=path,
        tokenizer=tokenizer,
        task=task,
        eval_examples=eval_examples,
        train_set=TokenizedDataset(tokenizer, train_examples, cfg.train.seq_len),
        eval_set=TokenizedDataset(tokenizer, eval_examples, cfg.train.seq_len),
    )


def _train_and_evaluate(
    cfg: Config, run: TrialRun, report: Reporter | None, show_progress: bool
) -> dict:

    from ftsweep.planning.cost import run_cost_usd
    from ftsweep.data.tokenize import PadCollator
    from ftsweep.data.evaluate import task_quality
    from ftsweep.data.forgetting import general_text_loss
    from ftsweep.methods.loading import build_model, count_parameters, folder_size_mb

    started = time.perf_counter()
    inputs = prepare_inputs(cfg)
    path, tokenizer, task = inputs.model_path, inputs.tokenizer, inputs.task
    train_set, eval_set, eval_examples = inputs.train_set, inputs.eval_set, inputs.eval_examples

    with (
        tempfile.TemporaryDirectory(prefix="ftsweep-trial-") as workdir,
        PeakMemory() as memory,
        trial_environment(deepspeed=cfg.method.spec.deepspeed_config(cfg.method) is not None),
    ):
        model = build_model(cfg, path)
        trainable, _total = count_parameters(model)
        general_loss_before = general_text_loss(model, tokenizer)
        counter = TrainedTokens(model)
        checkpoints = checkpoint_dir(cfg, run.trial_id) if cfg.train.checkpoint_every else None
        args = _training_arguments(cfg, workdir, show_progress, checkpoints)
        trainer = trainer_class()(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=PadCollator(tokenizer.pad_token_id),
            callbacks=[_make_callback(run, report, counter)],
        )
        # The Trainer's own runtime excludes engine set-up (DeepSpeed builds ops on first use),
        # so tokens/s measures training itself; wall_time_s below counts everything.
        resume_from = last_checkpoint(checkpoints)
        if resume_from:
            run.client.set_tag(run.run_id, TAG_RESUMED_FROM, resume_from.name.split("-")[-1])
        train_time = trainer.train(resume_from_checkpoint=resume_from and str(resume_from))
        train_time = train_time.metrics["train_runtime"]
        tokens_trained = counter.tokens

        eval_loss = trainer.evaluate()["eval_loss"]
        artifact_dir = Path(workdir) / "artifact"
        trainer.save_model(str(artifact_dir))
        artifact_mb = folder_size_mb(artifact_dir)
        eval_model = trainer.model
        if cfg.method.spec.needs_gathered_weights(cfg.method):
            # ZeRO-3 keeps weights partitioned; generate from the gathered checkpoint it saved.
            from transformers import AutoModelForCausalLM
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            # While the ZeRO-3 config is live, from_pretrained would partition this model too.
            unset_hf_deepspeed_config()
            eval_model = AutoModelForCausalLM.from_pretrained(artifact_dir, use_safetensors=True)
        quality = task_quality(
            eval_model,
            tokenizer,
            task,
            eval_examples,
            cfg.train.eval_batch_size,
            cfg.train.max_new_tokens,
        )
        forgetting = general_text_loss(eval_model, tokenizer) - general_loss_before
        if cfg.method.is_adapter:
            run.log_artifacts(artifact_dir, "adapter")

    wall_time_s = time.perf_counter() - started
    metrics = {
        "quality": quality,
        "eval_loss": eval_loss,
        "forgetting": forgetting,
        "wall_time_s": wall_time_s,
        "train_time_s": train_time,
        "tokens_trained": tokens_trained,
        "tokens_per_s": tokens_trained / train_time if train_time > 0 else 0.0,
        "peak_mem_gb": memory.peak_gb,
        "trainable_params": trainable,
        "artifact_mb": artifact_mb,
        "cost_usd": run_cost_usd(wall_time_s, cfg.hardware),
    }
    run.log_metrics(metrics, step=cfg.train.max_steps)
    if checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
    return metrics


def checkpoint_dir(cfg: Config, trial_id: str) -> Path:
    """Where a trial's resumable checkpoints live: stable across restarts of the trial."""
    return cfg.results_path / "checkpoints" / experiment_name(cfg) / trial_id


def last_checkpoint(folder: Path | None) -> Path | None:
    """The newest checkpoint saved to the end, or None.

    The Trainer writes trainer_state.json last, so a worker killed mid-save leaves a newer folder
    without a readable one: it is removed, and the trial resumes from the checkpoint before it.
    """
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import sort_checkpoints

    if folder is None or not folder.is_dir():
        return None
    # The Trainer's own ordering (by step, oldest first), the one it rotates checkpoints by.
    for path in map(Path, reversed(sort_checkpoints(str(folder)))):
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text())
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return None
