"""One trial trained data-parallel on several Ray Train workers (full fine-tuning with ZeRO).

`run_trial_on_workers` is the multi-worker form of `ftsweep.trial.run_trial`: the calling
process opens the trial's MLflow run, a `TorchTrainer` starts the worker group (Ray Train V2:
started from inside a Tune function trainable, never passed to a Tuner), and every worker
assembles the same pieces a single-process trial does (model, method, data, HF Trainer with the
method's DeepSpeed config) on its shard of each batch. Rank 0 alone writes to the run: the train
loss by step and, at the end, the record contract of `ftsweep.tracking` with the group's numbers.

How the group's numbers are made from each worker's (see `group_metrics`):

- `train.batch_size` stays the sequences per optimizer step, split evenly across workers, so a
  multi-worker trial trains on the same tokens per step as a single-process one;
- `tokens_trained` is the sum of the tokens each worker trained on (padding excluded);
- `tokens_per_s` is that sum over the slowest worker's training time (workers step together);
- `peak_mem_gb` is the largest worker's peak (per device: what must fit on one device);
- `wall_time_s` runs from just before the worker group is requested to rank 0's last
  measurement, so worker start-up is paid for; `cost_usd` prices it on every device the group
  holds: num_workers x hardware.devices_per_trial.

Where no GPU is used, workers talk over gloo and DeepSpeed runs with `DS_ACCELERATOR=cpu`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ftsweep.config import Config, ConfigError, HardwareConfig, validate
from ftsweep.trial.run import Reporter, TrialResult, stop_reason_for

# Environment a worker needs from the caller: DeepSpeed's accelerator and the model cache.
PROPAGATED_ENV = ("DS_ACCELERATOR", "FTSWEEP_CACHE", "HF_HOME", "TORCH_EXTENSIONS_DIR")

# What the Tune trial that starts a worker group reserves for itself: no CPU or GPU (it only
# waits on its workers, which reserve their own), and memory for its process. Ray refuses an
# empty request, and a CPU held here would be one the workers of a small machine never get.
DRIVER_RESOURCES = {"cpu": 0, "memory": 1024**3}


def worker_config(cfg: Config, num_workers: int, cpus_per_worker: int = 1) -> Config:
    """What one worker trains with: its share of each batch, its threads, an absolute results dir.

    The results dir is made absolute because Ray Train moves each worker into its own
    working directory.
    """
    train = cfg.train
    if num_workers < 1:
        raise ConfigError(f"num_workers={num_workers}: at least one worker is needed")
    if train.batch_size % num_workers:
        raise ConfigError(
            f"train.batch_size={train.batch_size} is the sequences per optimizer step and must "
            f"split evenly across {num_workers} workers; choose a multiple of {num_workers}"
        )
    per_worker = train.model_dump() | {"batch_size": train.batch_size // num_workers}
    if cfg.hardware.device == "cpu":
        per_worker["threads"] = cpus_per_worker
    return validate(cfg.model_dump() | {"train": per_worker, "results_dir": str(cfg.results_path)})


def group_metrics(
    workers: list[dict[str, float]], wall_time_s: float, hardware: HardwareConfig
) -> dict[str, float]:
    """Throughput, memory and cost of a worker group from each worker's own measurements.

    `workers[r]` holds rank r's `tokens_trained`, `train_time_s` and `peak_mem_gb`.
    """
    from ftsweep.planning.cost import run_cost_usd

    num_workers = len(workers)
    # Each worker trains its own shard: 2 workers x 1,000 tokens = 2,000 tokens.
    tokens = sum(w["tokens_trained"] for w in workers)
    # Workers step in lockstep (gradients are reduced every step): the slowest sets the pace.
    train_time_s = max(w["train_time_s"] for w in workers)
    metrics = {
        "num_workers": num_workers,
        "tokens_trained": tokens,
        "train_time_s": train_time_s,
        "tokens_per_s": tokens / train_time_s if train_time_s > 0 else 0.0,
        # What has to fit on one device: the largest worker's peak.
        "peak_mem_gb": max(w["peak_mem_gb"] for w in workers),
        "wall_time_s": wall_time_s,
        # num_workers x devices_per_trial devices, each held for the whole wall time.
        "devices": num_workers * hardware.devices_per_trial,
        "cost_usd": num_workers * run_cost_usd(wall_time_s, hardware),
    }
    for rank, w in enumerate(workers):
        for key in ("tokens_trained", "train_time_s", "peak_mem_gb"):
            metrics[f"rank{rank}_{key}"] = w[key]
    return metrics


def merge_worker_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from all workers' reports of a step: rank 0's, with the tokens of all.

    Train and eval loss are already averaged across workers by the HF Trainer; tokens are
    counted per worker, and ASHA's rungs are measured in the group's tokens.
    """
    merged = dict(reports[0])
    if all("tokens" in r for r in reports):
        merged["tokens"] = sum(r["tokens"] for r in reports)
    merged.pop("rank", None)
    return merged


def run_trial_on_workers(
    cfg: Config,
    trial_id: str,
    num_workers: int,
    invocation_id: str,
    report: Reporter | None = None,
    *,
    cpus_per_worker: int = 1,
) -> TrialResult:
    """Train, evaluate and record one configuration on `num_workers` Ray Train workers.

    Inside a Tune trainable, every report of the workers reaches Tune (through Ray's
    `TuneReportCallback`) and `report` is not used. Outside Tune, `report`, if given, is
    called with each report in the Ray Train controller process, so it must be picklable.
    Returns the recorded metrics. A failure is recorded, then the exception a worker raised is
    raised here, as `run_trial` would raise it.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ftsweep.tracking.record import TrialRun
    from ftsweep.trial.run import run_name_for

    worker_config(cfg, num_workers, cpus_per_worker)  # a bad split fails before anything starts
    data = cfg.model_dump() | {"results_dir": str(cfg.results_path)}
    data["method"]["num_workers"] = num_workers  # the run records the group that trained it
    cfg = validate(data)
    run = TrialRun(cfg, trial_id, run_name_for(cfg), invocation_id)
    if run.already_finished:
        return TrialResult(
            trial_id, run.run_id, "FINISHED", "already_recorded", run.recorded_metrics()
        )

    on_gpu = cfg.hardware.device == "cuda"
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if on_gpu:
        resources["GPU"] = cfg.hardware.devices_per_trial
    env = {k: os.environ[k] for k in PROPAGATED_ENV if k in os.environ}
    if not on_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    trainer = TorchTrainer(
        _train_on_worker,
        train_loop_config={
            "config": cfg.model_dump(),
            "trial_id": trial_id,
            "invocation_id": invocation_id,
            "cpus_per_worker": cpus_per_worker,
            "started_at": time.time(),
        },
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=on_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            # The trial id alone: a retried or resumed trial finds its Ray Train state again.
            name=trial_id,
            storage_path=str(cfg.results_path / "ray-train"),
            callbacks=_report_callbacks(report),
            worker_runtime_env={"env_vars": env},
        ),
    )
    try:
        trainer.fit()
    except SystemExit:
        run.finish("FINISHED", "early_stopped")
        raise
    except KeyboardInterrupt as exc:
        run.finish("KILLED", "interrupted", f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        cause = worker_failure(exc)
        run.finish("FAILED", stop_reason_for(cause), f"{type(cause).__name__}: {cause}")
        if cause is exc:
            raise
        # What the worker raised (TrialDiverged, OutOfMemoryError, a lost actor), as run_trial
        # would raise it: callers tell a transient failure from the trial's own by its type.
        raise cause from exc
    run.finish("FINISHED", "completed")
    metrics = dict(run.client.get_run(run.run_id).data.metrics)
    return TrialResult(trial_id, run.run_id, "FINISHED", "completed", metrics)


def worker_failure(exc: BaseException) -> BaseException:
    """What went wrong on the workers, as the worker raised it.

    Ray Train gathers one exception per failed rank; when one rank fails the others often fail
    as a consequence (a closed connection). The one that explains the failure comes first: a
    reason of the trial's own (divergence, out of memory), then a Ray error (a lost worker,
    worth a retry), then the lowest rank's.
    """
    from ray.exceptions import RayError

    from ftsweep.trial.run import stop_reason_for

    failures = getattr(exc, "worker_failures", None)
    if not failures:
        return exc
    by_rank = [failures[rank] for rank in sorted(failures)]
    for error in by_rank:
        if stop_reason_for(error) != "failed":
            return error
    for error in by_rank:
        if isinstance(error, RayError):
            return error
    return by_rank[0]


def _report_callbacks(report: Reporter | None) -> list:
    from ray.train.v2.api.callback import UserCallback
    from ray.tune.integration.ray_train import TuneReportCallback

    class ToTune(TuneReportCallback):
        """Ray's Tune forwarding, with the tokens of every worker rather than rank 0's."""

        def after_report(self, run_context, metrics, checkpoint):
            super().after_report(run_context, [merge_worker_reports(metrics)], checkpoint)

    class ToReporter(UserCallback):
        def __init__(self, reporter: Reporter):
            self.reporter = reporter

        def after_report(self, run_context, metrics, checkpoint):
            self.reporter(merge_worker_reports(metrics))

    try:
        return [ToTune()]
    except RuntimeError:  # not in a Tune session
        return [ToReporter(report)] if report is not None else []


class _NoRecord:
    """What ranks other than 0 log to: nothing (rank 0 alone writes the trial's run)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        pass


def _train_on_worker(loop: dict[str, Any]) -> None:
    """One worker's part of the trial: the pieces of `ftsweep.trial` on this worker's shard."""
    import ray.train
    import torch.distributed as dist

    from ftsweep.data.tokenize import PadCollator
    from ftsweep.data.evaluate import task_quality
    from ftsweep.data.forgetting import general_text_loss
    from ftsweep.methods.loading import build_model, count_parameters, folder_size_mb
    from ftsweep.tracking.record import TrialRun
    from ftsweep.trial.run import (
        PeakMemory,
        TrainedTokens,
        _make_callback,
        _training_arguments,
        prepare_inputs,
        run_name_for,
        trainer_class,
    )

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    record_cfg = validate(loop["config"])
    cfg = worker_config(record_cfg, world, loop["cpus_per_worker"])
    run = (
        TrialRun(record_cfg, loop["trial_id"], run_name_for(record_cfg), loop["invocation_id"])
        if rank == 0
        else _NoRecord()
    )

    def report(metrics: dict) -> None:
        # Every rank reports at the same steps: ray.train.report waits for all workers.
        ray.train.report({**metrics, "rank": rank})

    # Every worker builds the same examples; the Trainer's distributed sampler shards them.
    inputs = prepare_inputs(cfg)
    path, tokenizer, task = inputs.model_path, inputs.tokenizer, inputs.task
    train_set, eval_set, eval_examples = inputs.train_set, inputs.eval_set, inputs.eval_examples

    with tempfile.TemporaryDirectory(prefix="ftsweep-worker-") as workdir, PeakMemory() as memory:
        model = build_model(cfg, path)
        trainable, _total = count_parameters(model)
        # Loaded before the Trainer starts DeepSpeed, so every worker still holds whole weights.
        general_loss_before = general_text_loss(model, tokenizer) if rank == 0 else math.nan
        counter = TrainedTokens(model)
        trainer = trainer_class()(
            model=model,
            args=_training_arguments(cfg, workdir, show_progress=False),
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=PadCollator(tokenizer.pad_token_id),
            callbacks=[_make_callback(run, report, counter)],
        )
        train_time = trainer.train().metrics["train_runtime"]
        eval_loss = trainer.evaluate()["eval_loss"]
        artifact_dir = Path(workdir) / "artifact"
        # Under ZeRO-3 saving gathers the partitioned weights: every rank takes part, rank 0 writes.
        trainer.save_model(str(artifact_dir))
        own = {
            "tokens_trained": counter.tokens,
            "train_time_s": train_time,
            "peak_mem_gb": memory.peak_gb,
        }
        workers: list[dict] = [{} for _ in range(world)]
        dist.all_gather_object(workers, own)
        if rank != 0:
            return
        # Rank 0 alone measures quality, over all evaluation examples, as a single process does.
        artifact_mb = folder_size_mb(artifact_dir)
        eval_model = trainer.model
        if cfg.method.spec.needs_gathered_weights(cfg.method):
            from transformers import AutoModelForCausalLM
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            # A plain copy from the gathered checkpoint: loading under the live ZeRO-3 config
            # would partition it again across workers that are no longer listening.
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

    # Rank 0's own peak now includes its evaluation.
    workers[0]["peak_mem_gb"] = max(workers[0]["peak_mem_gb"], memory.peak_gb)
    metrics = {
        "quality": quality,
        "eval_loss": eval_loss,
        "forgetting": forgetting,
        "trainable_params": trainable,
        "artifact_mb": artifact_mb,
        **group_metrics(workers, time.time() - loop["started_at"], cfg.hardware),
    }
    run.log_metrics(metrics, step=cfg.train.max_steps)
