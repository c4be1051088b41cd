"""A trial on a Ray Train worker group: data-parallel full fine-tuning with DeepSpeed ZeRO.

The driver (`run_trial`) has opened the trial's MLflow run; `train_on_workers` starts a
`TorchTrainer` (Ray Train V2: started from inside a Tune function trainable, never passed to a
Tuner), and every worker runs the one trial recipe (`ftsweep.trial.recipe`) as its rank, on its
share of each batch. Rank 0 writes to the driver's run through a `RunRecorder` and never
reopens it. `train.batch_size` stays the sequences per optimizer step, split evenly across
workers, so a multi-worker trial trains on the same tokens per step as a single-process one.

Where no GPU is used, workers talk over gloo and DeepSpeed runs with `DS_ACCELERATOR=cpu`.
"""

from __future__ import annotations

import os
from typing import Any

from ftsweep.config import Config, validate
from ftsweep.planning.layout import per_device_batch
from ftsweep.tracking.record import TrialRun
from ftsweep.trial.checkpoints import state_location
from ftsweep.trial.hf_trainer import Reporter

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
    per_worker = train.model_dump() | {
        "batch_size": per_device_batch(train.batch_size, num_workers)
    }
    if cfg.hardware.device == "cpu":
        per_worker["threads"] = cpus_per_worker
    return validate(cfg.model_dump() | {"train": per_worker, "results_dir": str(cfg.results_path)})


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


def train_on_workers(
    cfg: Config, run: TrialRun, report: Reporter | None, started_at: float, cpus_per_worker: int
) -> dict[str, float]:
    """Run the recipe on `method.num_workers` Ray Train workers; returns the recorded metrics.

    A failure on the workers is raised as Ray Train raised it (`run_trial` unwraps it).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ftsweep.tracking.store import tracking_uri

    num_workers = cfg.method.group_size
    worker_config(cfg, num_workers, cpus_per_worker)  # a bad split fails before anything starts
    on_gpu = cfg.hardware.device == "cuda"
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if on_gpu:
        resources["GPU"] = cfg.hardware.devices_per_trial
    env = {k: os.environ[k] for k in PROPAGATED_ENV if k in os.environ}
    if not on_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": cfg.model_dump() | {"results_dir": str(cfg.results_path)},
            "trial_id": run.trial_id,
            "tracking_uri": tracking_uri(cfg),
            "run_id": run.run_id,
            "logged_steps": run.logged_steps,
            "cpus_per_worker": cpus_per_worker,
            "started_at": started_at,
        },
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=on_gpu,
            resources_per_worker=resources,
            placement_strategy=cfg.hardware.worker_placement.upper(),
        ),
        run_config=RunConfig(
            # The trial id alone: a retried or resumed trial finds its Ray Train state again.
            name=run.trial_id,
            storage_path=state_location(cfg, "ray-train"),
            callbacks=_report_callbacks(report),
            worker_runtime_env={"env_vars": env},
        ),
    )
    trainer.fit()
    return dict(run.client.get_run(run.run_id).data.metrics)


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


def _worker_loop(loop: dict[str, Any]) -> None:
    """One worker's part of the trial: the recipe as this rank."""
    import ray.train

    from ftsweep.tracking.record import RunRecorder
    from ftsweep.trial.recipe import Rank, train_and_evaluate

    context = ray.train.get_context()
    rank = Rank(context.get_world_rank(), context.get_world_size(), context.get_local_rank())
    cfg = worker_config(validate(loop["config"]), rank.world, loop["cpus_per_worker"])
    run = (
        RunRecorder.attach(loop["tracking_uri"], loop["run_id"], loop["logged_steps"])
        if rank.records
        else None
    )
    _record_worker_nodes(run, rank)

    def report(metrics: dict) -> None:
        # Every rank reports at the same steps: ray.train.report waits for all workers.
        ray.train.report({**metrics, "rank": rank.rank})

    train_and_evaluate(cfg, loop["trial_id"], run, report, rank=rank, started_at=loop["started_at"])


def _record_worker_nodes(run, rank) -> None:
    """Rank 0 tags the run with every rank's Ray node (the group may span nodes)."""
    import torch.distributed as dist

    from ftsweep.tracking.record import TAG_WORKER_NODES, ray_node

    nodes: list = [ray_node()]
    if dist.is_initialized():  # Ray Train's process group
        nodes = [None] * rank.world
        dist.all_gather_object(nodes, ray_node())
    if run is not None:
        run.set_tag(TAG_WORKER_NODES, ",".join(map(str, nodes)))
