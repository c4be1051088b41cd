"""The MLflow record of a trial: one run per trial, keyed by a stable trial id.

This record is a contract that the report and other tools read:

- params: `method`, `learning_rate`, and for LoRA-type runs `lora_r`, `lora_alpha`,
  `target_modules` (absent for full runs), plus the model, data and training knobs;
- metrics: `quality`, `eval_loss`, `wall_time_s`, `tokens_per_s`, `peak_mem_gb`,
  `trainable_params`, `artifact_mb`, `cost_usd` (and `train_loss` by step);
- tags: `ftsweep.sweep`, `ftsweep.trial_id` (stable for the life of a trial, across resumes),
  `ftsweep.run_id` (the invocation that last ran it), `ftsweep.stop_reason`.

Runs are found again by `ftsweep.trial_id`, never by an in-memory map, so a resumed sweep
reopens a trial's run instead of opening a second one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ftsweep.config import Config

TAG_SWEEP = "ftsweep.sweep"
TAG_TRIAL_ID = "ftsweep.trial_id"
TAG_RUN_ID = "ftsweep.run_id"
TAG_STOP_REASON = "ftsweep.stop_reason"
TAG_ERROR = "ftsweep.error"
TAG_METHOD = "ftsweep.method"

METRICS = (
    "quality",
    "eval_loss",
    "wall_time_s",
    "tokens_per_s",
    "peak_mem_gb",
    "trainable_params",
    "artifact_mb",
    "cost_usd",
)


def tracking_uri(cfg: Config) -> str:
    if cfg.tracking.uri:
        return cfg.tracking.uri
    return f"sqlite:///{cfg.results_path / 'mlflow.db'}"


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.sweep.name


def run_params(cfg: Config) -> dict[str, Any]:
    """What defines a trial, as MLflow params. LoRA knobs only where they mean something."""
    method = cfg.method
    params: dict[str, Any] = {
        "method": method.name,
        "learning_rate": method.learning_rate,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "hardware": cfg.hardware.name,
        "max_steps": cfg.train.max_steps,
        "batch_size": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "seq_len": cfg.train.seq_len,
        "seed": cfg.train.seed,
        "precision": cfg.train.precision,
    }
    if method.is_lora:
        targets = method.target_modules
        params |= {
            "lora_r": method.lora_r,
            "lora_alpha": method.lora_alpha,
            "lora_dropout": method.lora_dropout,
            "target_modules": targets if isinstance(targets, str) else ",".join(targets),
        }
    else:
        params |= {"zero_stage": method.zero_stage or 0, "offload": method.offload}
    return params


def get_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, creating it (with artifacts beside the store) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it between our look-up and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_trial_runs(client, experiment_id: str, trial_id: str) -> list:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'", max_results=100
    )


def mark_abandoned_runs(client, experiment_id: str, reason: str = "interrupted") -> int:
    """Runs a dead driver left RUNNING become KILLED with a reason; returns how many."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10000)
    for run in runs:
        client.set_tag(run.info.run_id, TAG_STOP_REASON, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


class TrialRun:
    """One trial's MLflow run: opened or reopened by trial id, closed with a status and reason."""

    def __init__(self, cfg: Config, trial_id: str, run_name: str, invocation_id: str):
        self.cfg = cfg
        self.trial_id = trial_id
        self.client = get_client(tracking_uri(cfg))
        self.experiment_id = ensure_experiment(
            self.client, experiment_name(cfg), cfg.results_path / "mlartifacts"
        )
        self.finished_run = None
        self.last_step = -1
        runs = find_trial_runs(self.client, self.experiment_id, trial_id)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            self.finished_run = finished[0]
            self.run_id = finished[0].info.run_id
            return
        tags = {
            TAG_SWEEP: cfg.sweep.name,
            TAG_TRIAL_ID: trial_id,
            TAG_RUN_ID: invocation_id,
            TAG_METHOD: cfg.method.name,
        }
        if runs:
            # Resume: reopen the trial's own run and log only steps after those it already has.
            run = runs[0]
            self.run_id = run.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            history = self.client.get_metric_history(self.run_id, "train_loss")
            self.last_step = max((m.step for m in history), default=-1)
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)
            self.client.set_tag(self.run_id, TAG_STOP_REASON, "running")
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags | {TAG_STOP_REASON: "running"})
            self.run_id = run.info.run_id
            self._log_params(run_params(cfg))

    @property
    def already_finished(self) -> bool:
        return self.finished_run is not None

    def recorded_metrics(self) -> dict[str, float]:
        return dict(self.finished_run.data.metrics) if self.finished_run else {}

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if step <= self.last_step:
            return  # already logged before a resume
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path=artifact_path)

    def finish(self, status: str, stop_reason: str, error: str | None = None) -> None:
        self.client.set_tag(self.run_id, TAG_STOP_REASON, stop_reason)
        if error:
            self.client.set_tag(self.run_id, TAG_ERROR, error[:4000])
        self.client.set_terminated(self.run_id, status=status)
