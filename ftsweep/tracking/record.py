"""The MLflow record of a trial: one run per trial, keyed by a stable trial id.

This record is a contract that the report and other tools read:

- params: `method`, `learning_rate`, `weight_decay`, `warmup_ratio`, the method's own knobs
  (`lora_r`, `lora_alpha`, `lora_dropout`, `target_modules` for LoRA-type runs; `zero_stage`,
  `offload`, `num_workers` for full ones), its variant knobs where set away from their
  defaults (`use_dora`, `use_rslora`, `init`, `loraplus_lr_ratio`; `optimizer`: a run without
  one was plain LoRA or AdamW), the training knobs, and the inputs: `model`,
  `model.path`, `model.fingerprint`, `data` and every `data.*` key with `data.fingerprint`,
  `max_new_tokens`, `eval_batch_size`, `forgetting_corpus` (a fingerprint of the general text
  forgetting is measured on, `ftsweep.data.corpus`) and `forgetting_windows` (how many of its
  windows, `all` by default) (see `inputs_params`);
- metrics: `quality` (mean score on the validation split, what selection uses) with its 95%
  bootstrap interval `quality_ci_low`/`quality_ci_high`, `test_quality` (the test split, never
  used for selection) with `test_quality_ci_low`/`_high`, both views of each reply beside
  them (`exact_match`: the whole reply right; `partial_credit`: the share of it right; quality
  is the task's primary one) with their intervals, on both splits, `num_eval_examples`,
  `num_test_examples`, `eval_loss`, `scoring_time_s` (generating and scoring every held-out
  reply), `wall_time_s`, `tokens_per_s`, `peak_mem_gb`,
  `trainable_params`, `artifact_mb`, `cost_usd`, `forgetting` (mean next-token loss per
  token on general text after training minus before, in nats, against the unquantised base for
  every method) with its paired 95% bootstrap interval over 256-token windows
  `forgetting_ci_low`/`forgetting_ci_high`, `forgetting_tokens` (the tokens scored),
  `general_text_loss` (after) and `general_text_loss_base` (before), `quantization_loss` (what
  quantising the base cost on the same text, 0 for a method that does not quantise) with
  `quantization_loss_ci_low`/`_high` (and `train_loss` by step);
- artifacts: `scores/scores.json`, the per-example scores of both splits (ids and scores), so
  runs can be compared on the same examples; the adapter of LoRA-type runs under `adapter/`;
- tags: `ftsweep.sweep`, `ftsweep.trial_id` (stable for the life of a trial, across resumes),
  `ftsweep.inputs` (a short id of the inputs: runs are only compared within one),
  `ftsweep.run_id` (the invocation that last ran it), `ftsweep.stop_reason`, and where it ran:
  `ftsweep.node` (the Ray node of the latest attempt), `ftsweep.nodes` (that of every attempt,
  oldest first) and, for a worker group, `ftsweep.worker_nodes` (each rank's); a run that ran
  out of memory also carries `ftsweep.plan_peak_gb` (the plan's estimate) and
  `ftsweep.peak_mem_gb` (what was measured when it failed).

Runs are found again by `ftsweep.trial_id`, never by an in-memory map, so a resumed sweep
reopens a trial's run instead of opening a second one.

Every write is retried while the store is busy or restarting (`ftsweep.tracking.retry`;
the SQLite lock and the client are in `ftsweep.tracking.store`), and nothing is logged twice:
a retried batch carries the same timestamps, so the store's primary key drops a metric row it
already has; params are re-logged with equal values; a run is created again only after a
look-up by trial id finds none.

Errors recorded on a run are redacted (`ftsweep.tracking.redact`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ftsweep.config import Config
from ftsweep.tracking.queries import search_all
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.store import ensure_experiment, experiment_name, get_client, tracking_uri

# isort: split
TAG_SWEEP = "ftsweep.sweep"
TAG_TRIAL_ID = "ftsweep.trial_id"
TAG_RUN_ID = "ftsweep.run_id"
TAG_STOP_REASON = "ftsweep.stop_reason"
TAG_ERROR = "ftsweep.error"
TAG_METHOD = "ftsweep.method"
TAG_PLAN_PEAK_GB = "ftsweep.plan_peak_gb"
TAG_PEAK_MEM_GB = "ftsweep.peak_mem_gb"
TAG_FAILURES = "ftsweep.failures"  # how many times the trial was restarted after it broke off
TAG_RESUMED_FROM = "ftsweep.resumed_from_step"
TAG_WORKER = "ftsweep.worker"  # host:pid of the process running the trial, for operators
TAG_NODE = "ftsweep.node"  # the Ray node running the trial's attempt (see `ray_node`)
TAG_NODES = "ftsweep.nodes"  # the Ray node of every attempt, oldest first, comma-separated
TAG_WORKER_NODES = "ftsweep.worker_nodes"  # a worker group's: each rank's Ray node, in rank order
TAG_INPUTS = "ftsweep.inputs"  # inputs_id: runs with the same value were trained and scored alike

METRICS = (
    "quality",
    "quality_ci_low",
    "quality_ci_high",
    "test_quality",
    "test_quality_ci_low",
    "test_quality_ci_high",
    *(
        f"{split}{view}{bound}"
        for split in ("", "test_")
        for view in ("exact_match", "partial_credit")
        for bound in ("", "_ci_low", "_ci_high")
    ),
    "eval_loss",
    "scoring_time_s",
    "wall_time_s",
    "checkpoint_time_s",
    "tokens_per_s",
    "peak_mem_gb",
    "trainable_params",
    "artifact_mb",
    "cost_usd",
    "forgetting",
    "forgetting_ci_low",
    "forgetting_ci_high",
    "forgetting_tokens",
    "general_text_loss",
    "general_text_loss_base",
    "quantization_loss",
    "quantization_loss_ci_low",
    "quantization_loss_ci_high",
)


def inputs_params(cfg: Config, resolve: bool = True) -> dict[str, Any]:
    """What a run was trained and scored on: the model (its path and a fingerprint of its
    weights), the whole data config (with a fingerprint of user files) and how replies are
    scored. Runs whose inputs differ are never compared as one sweep.

    `resolve=False` keeps `max_new_tokens: auto` as written instead of the limit it comes to
    (which needs the tokenizer): what a trial's id is made from, so naming a trial loads
    nothing (`ftsweep validate` imports neither torch nor transformers); `auto` is a function
    of the model and data, which the id holds anyway."""
    from ftsweep.data.corpus import corpus_fingerprint
    from ftsweep.data.generation_limit import max_new_tokens
    from ftsweep.tracking.fingerprint import data_fingerprint, model_fingerprint

    data = cfg.data.model_dump(mode="json")
    data.pop("name")
    return {
        "model": cfg.model.name,
        "model.path": cfg.model.name_or_path,
        "model.fingerprint": model_fingerprint(cfg.model),
        "data": cfg.data.name,
        **{f"data.{key}": value for key, value in data.items()},
        "data.fingerprint": data_fingerprint(cfg.data),
        # the limit replies had
        "max_new_tokens": max_new_tokens(cfg) if resolve else cfg.train.max_new_tokens,
        "eval_batch_size": cfg.train.eval_batch_size,
        "forgetting_corpus": corpus_fingerprint(),
        "forgetting_windows": cfg.train.forgetting_windows or "all",
    }


def inputs_id(params: dict[str, Any]) -> str:
    """A short id of a run's inputs (`inputs_params`), the tag runs are grouped by."""
    keys = sorted(k for k in params if k in INPUT_KEYS or k.startswith(("data.", "model.")))
    identity = json.dumps({k: str(params[k]) for k in keys}, sort_keys=True)
    return hashlib.sha1(identity.encode()).hexdigest()[:10]


# Params that name a run's inputs besides the `data.*` and `model.*` ones.
INPUT_KEYS = ("model", "data", "max_new_tokens", "eval_batch_size")


def run_params(cfg: Config, resolve: bool = True) -> dict[str, Any]:
    """What defines a trial, as MLflow params: its inputs, every train and method knob that can
    change its result (knobs only where the method has them); `resolve` as in `inputs_params`."""
    method = cfg.method
    params: dict[str, Any] = {
        "method": method.name,
        "learning_rate": method.learning_rate,
        "weight_decay": method.weight_decay,
        "warmup_ratio": method.warmup_ratio,
        **inputs_params(cfg, resolve),
        "hardware": cfg.hardware.name,
        "max_steps": cfg.train.max_steps,
        "batch_size": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "seq_len": cfg.train.seq_len,
        "seed": cfg.train.seed,
        "precision": cfg.train.precision,
    }
    params |= method.spec.record_params(method)
    return params


def ray_node() -> str | None:
    """The Ray node this process runs on, as `IP/NODE` (its address and the first 8 hex digits
    of Ray's node id: several nodes may share one address); None outside Ray."""
    ray = sys.modules.get("ray")  # a process Ray started has imported it; others need not
    if ray is None or not ray.is_initialized():
        return None
    node_id = ray.get_runtime_context().get_node_id()
    # The address the node registered with (`ray start --node-ip-address`), not the one this
    # process would guess from its routes: several nodes of one machine guess the same one.
    address = next(
        (n["NodeManagerAddress"] for n in ray.nodes() if n.get("NodeID") == node_id), None
    )
    if address is None:
        from ray.util import get_node_ip_address

        address = get_node_ip_address()
    return f"{address}/{node_id[:8]}"


def find_trial_runs(client, experiment_id: str, trial_id: str) -> list:
    """Every run of the experiment tagged with this trial id (all pages)."""
    return search_all(client, [experiment_id], f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'")


def mark_abandoned_runs(client, experiment_id: str, reason: str = "interrupted") -> int:
    """Runs a dead driver left RUNNING become KILLED with a reason; returns how many."""
    runs = search_all(client, [experiment_id], "attributes.status = 'RUNNING'")
    for run in runs:
        client.set_tag(run.info.run_id, TAG_STOP_REASON, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


class RunRecorder:
    """Writes to one open run: metrics after the steps it already has, artifacts, tags.

    What a worker-group trial's rank 0 logs through: the driver opened (or reopened) the run,
    and the recorder only writes to it, so a healthy trial is never counted as restarted.
    """

    def __init__(self, client, run_id: str, logged_steps: dict[str, int] | None = None):
        self.client = client
        self.run_id = run_id
        self.logged_steps = dict(logged_steps or {})  # per metric: the last step already recorded

    @classmethod
    def attach(cls, uri: str, run_id: str, logged_steps: dict[str, int] | None = None):
        return cls(get_client(uri), run_id, logged_steps)

    def log_metrics(self, metrics: dict[str, float], step: int, replace: bool = False) -> None:
        """Metrics at a step; steps a resumed run already has are skipped unless `replace`
        (a newer value for the same step, such as a total over attempts)."""
        from mlflow.entities import Metric

        # One timestamp for the batch, kept across retries: a batch the store took before a
        # connection dropped is then a duplicate of the same rows, which it ignores.
        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None
            and math.isfinite(float(v))
            and (replace or step > self.logged_steps.get(k, -1))  # not logged before a resume
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path=artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(
        self,
        status: str,
        stop_reason: str,
        error: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.client.set_tag(self.run_id, TAG_STOP_REASON, stop_reason)
        if error:
            self.client.set_tag(self.run_id, TAG_ERROR, redact_uri(error)[:4000])
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run_id, key, value)
        self.client.set_terminated(self.run_id, status=status)


class TrialRun(RunRecorder):
    """One trial's MLflow run: opened or reopened by trial id, closed with a status and reason."""

    def __init__(
        self,
        cfg: Config,
        trial_id: str,
        run_name: str,
        invocation_id: str,
        params: dict[str, Any] | None = None,
    ):
        """`params` replaces the config's own trial params (a run that is not a trial)."""
        params = run_params(cfg) if params is None else params
        self.cfg = cfg
        self.trial_id = trial_id
        self.client = get_client(tracking_uri(cfg))
        self.experiment_id = ensure_experiment(
            self.client, experiment_name(cfg), cfg.results_path / "mlartifacts"
        )
        self.finished_run = None
        self.logged_steps: dict[str, int] = {}  # per metric: the last step already recorded
        self.failures = 0
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
            TAG_METHOD: str(params["method"]),
            TAG_WORKER: f"{socket.gethostname()}:{os.getpid()}",
            TAG_INPUTS: inputs_id(params),
            TAG_STOP_REASON: "running",
        }
        node = ray_node()
        if node:
            earlier = runs[0].data.tags.get(TAG_NODES) if runs else None
            tags |= {TAG_NODE: node, TAG_NODES: f"{earlier},{node}" if earlier else node}
        if runs:
            self._reopen(runs[0], tags)
        else:
            run = self.client.create_run_once(
                self.experiment_id,
                run_name,
                tags,
                lambda raw: find_trial_runs(raw, self.experiment_id, trial_id),
            )
            self.run_id = run.info.run_id
            self._log_params(params)

    def _reopen(self, run, tags: dict[str, str]) -> None:
        """Resume: reopen the trial's own run and log only steps after those it already has."""
        self.run_id = run.info.run_id
        self.failures = int(run.data.tags.get(TAG_FAILURES, "0")) + 1
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, TAG_FAILURES, str(self.failures))
        for key in run.data.metrics:
            history = self.client.get_metric_history(self.run_id, key)
            self.logged_steps[key] = max((m.step for m in history), default=-1)
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    @property
    def already_finished(self) -> bool:
        return self.finished_run is not None

    def recorded_metrics(self) -> dict[str, float]:
        return dict(self.finished_run.data.metrics) if self.finished_run else {}

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
