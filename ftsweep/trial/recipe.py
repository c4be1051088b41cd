"""The one trial recipe, for one process or each rank of a worker group.

As nanoGPT keeps one loop for one or many ranks, a single-process trial is a group of one:
every rank builds the same inputs, trains its shard of each batch with the HF Trainer (the
method's DeepSpeed config where it has one), and checkpoints as the Trainer does; rank 0 alone
records (train loss by step, and at the end the record contract of `ftsweep.tracking`) and
scores quality on every evaluation example.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ftsweep.config import Config
from ftsweep.planning.checkpointing import checkpoint_every_steps
from ftsweep.tracking.record import TAG_RESUMED_FROM, RunRecorder
from ftsweep.trial.checkpoints import (
    checkpoint_dir,
    checkpoint_step,
    checkpoint_uri,
    discard_checkpoints,
    resume_point,
)
from ftsweep.trial.environment import trial_environment
from ftsweep.trial.hf_trainer import Reporter, progress_callback, trainer_class, training_arguments
from ftsweep.trial.measure import PeakMemory, TrainedTokens, group_metrics


@dataclass
class TrialInputs:
    """What a trial trains and evaluates on, built the same way in every process that trains."""

    model_path: str
    tokenizer: object
    task: object
    eval_examples: list  # the validation split: quality, what runs are selected on
    test_examples: list  # the test split: test_quality, never used for selection
    train_set: object
    eval_set: object  # the validation split, tokenized: eval_loss
    max_new_tokens: int  # the generation limit (train.max_new_tokens, `auto` resolved)
    general_windows: list  # token windows of general text forgetting is measured on


@dataclass(frozen=True)
class Rank:
    """This process's place in the trial's group: rank 0 of 1 for a single process."""

    rank: int = 0
    world: int = 1
    local: int = 0  # its rank among the group's processes on this node

    @property
    def records(self) -> bool:
        return self.rank == 0


def prepare_inputs(cfg: Config) -> TrialInputs:
    """Threads and seed set; tokenizer loaded; the task's examples split and tokenized."""
    import torch
    from transformers import set_seed

    from ftsweep.data import generation_limit
    from ftsweep.data.corpus import corpus_windows
    from ftsweep.data.tasks import get_task, three_way_split, warn_if_few
    from ftsweep.data.tokenize import TokenizedDataset
    from ftsweep.models.builtin import load_tokenizer, resolve_model_path

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    task = get_task(cfg.data)
    splits = three_way_split(task, cfg.data)
    warn_if_few(splits)
    limit = generation_limit.max_new_tokens(cfg)
    generation_limit.warn_if_cut(tokenizer, splits.validation + splits.test, limit)
    return TrialInputs(
        model_path=resolve_model_path(cfg.model.name_or_path),
        tokenizer=tokenizer,
        task=task,
        eval_examples=splits.validation,
        test_examples=splits.test,
        train_set=TokenizedDataset(tokenizer, splits.train, cfg.train.seq_len),
        eval_set=TokenizedDataset(tokenizer, splits.validation, cfg.train.seq_len),
        max_new_tokens=limit,
        general_windows=corpus_windows(tokenizer, limit=cfg.train.forgetting_windows),
    )


def score_and_log_examples(cfg: Config, model, inputs: TrialInputs, run, workdir: Path) -> dict:
    """Quality of both held-out splits with their intervals; the per-example scores go to the
    run as `scores/scores.json`."""
    import json

    from ftsweep.data.evaluate import score_splits

    splits = {"validation": inputs.eval_examples, "test": inputs.test_examples}
    started = time.perf_counter()
    metrics, per_example = score_splits(
        model,
        inputs.tokenizer,
        inputs.task,
        splits,
        cfg.train.eval_batch_size,
        inputs.max_new_tokens,
    )
    # generating every held-out reply: what scoring costs beside training
    metrics["scoring_time_s"] = time.perf_counter() - started
    folder = workdir / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scores.json").write_text(json.dumps(per_example))
    run.log_artifacts(folder, "scores")
    return metrics


def train_and_evaluate(
    cfg: Config,
    trial_id: str,
    run: RunRecorder | None,
    report: Reporter | None,
    *,
    rank: Rank = Rank(),
    started_at: float | None = None,
    show_progress: bool = False,
) -> dict | None:
    """Train this rank's part of the trial; rank 0 scores it, logs and returns the metrics
    (other ranks return None). `run` is where rank 0 records (None on other ranks);
    `started_at` (time.time()) is when the trial's processes were requested."""
    started_at = time.time() if started_at is None else started_at
    inputs = prepare_inputs(cfg)
    # `auto` resolves to steps by what a save costs (planning.checkpointing)
    checkpoints = checkpoint_dir(cfg, trial_id) if checkpoint_every_steps(cfg) else None
    kept_at = checkpoints and checkpoint_uri(cfg, trial_id)  # beyond this node (storage)
    with (
        tempfile.TemporaryDirectory(prefix="ftsweep-trial-") as workdir,
        PeakMemory() as memory,
        trial_environment(deepspeed=cfg.method.spec.deepspeed_config(cfg.method) is not None),
    ):
        trained = _train(
            cfg, inputs, run, report, rank, Path(workdir), checkpoints, kept_at, show_progress
        )
        ranks = _gather({**trained.own, "peak_mem_gb": memory.peak_gb}, rank)
        if not rank.records:
            return None
        scores = _score(cfg, inputs, trained, run)
    # Rank 0's own peak now includes its evaluation.
    ranks[0]["peak_mem_gb"] = max(ranks[0]["peak_mem_gb"], memory.peak_gb)
    metrics = {**scores, **group_metrics(ranks, time.time() - started_at, cfg)}
    run.log_metrics(metrics, step=cfg.train.max_steps)
    if checkpoints:
        discard_checkpoints(cfg, trial_id)  # finished: nothing left to resume
    return metrics


@dataclass
class _Trained:
    trainer: object
    artifact_dir: Path
    general_before: object  # WindowLosses forgetting is measured from (rank 0; else None)
    quantization: dict  # what quantising the base cost on general text (rank 0)
    trainable: int
    own: dict  # this rank's tokens and training time


def _train(
    cfg, inputs, run, report, rank: Rank, workdir: Path, checkpoints, kept_at, show_progress
):
    """Load, prepare and train the model; save what the run produces (every rank takes part:
    under ZeRO-3 saving gathers the partitioned weights, rank 0 writes)."""
    from ftsweep.data.tokenize import PadCollator
    from ftsweep.methods.loading import build_model, compute_precision, count_parameters
    from ftsweep.trial.general_text import losses_before_training, unquantised_base_losses

    # A quantised base is measured against the unquantised one, loaded and let go first so the
    # two are never in memory together.
    base = None
    if rank.records:
        with compute_precision(cfg):
            base = unquantised_base_losses(cfg, inputs.model_path, inputs.general_windows)
    model = build_model(cfg, inputs.model_path)
    trainable, _total = count_parameters(model)
    args = training_arguments(cfg, str(workdir), show_progress and rank.records, checkpoints)
    # Forgetting compares these losses with ones measured after training on the training
    # device under its autocast: measure them there too, not on the CPU the model loaded on
    # (a quantised base is already there; ZeRO-3's "after" runs on a gathered CPU copy).
    if args.device.type == "cuda" and not (
        cfg.method.spec.quantized or cfg.method.spec.needs_gathered_weights(cfg.method)
    ):
        model.to(args.device)
    # Measured before the Trainer starts DeepSpeed, while every rank still holds whole weights.
    before, quantization = None, {}
    if rank.records:
        with compute_precision(cfg):
            before, quantization = losses_before_training(model, inputs.general_windows, base)
    counter = TrainedTokens(model)
    trainer = trainer_class()(
        model=model,
        args=args,
        # the method's own optimizer where it builds one (LoRA+), else the Trainer's
        optimizers=(cfg.method.spec.build_optimizer(model, cfg.method, args), None),
        train_dataset=inputs.train_set,
        eval_dataset=inputs.eval_set,
        data_collator=PadCollator(inputs.tokenizer.pad_token_id),
        # Progress to the run and the scheduler (the trainer signs each checkpoint it writes).
        callbacks=[progress_callback(run if rank.records else None, report, counter)],
    )
    trainer.checkpoint_uri = kept_at
    resume_from = resume_point(checkpoints, rank.rank, rank.world, kept_at, rank.local)
    if resume_from and rank.records:
        run.set_tag(TAG_RESUMED_FROM, checkpoint_step(resume_from))
    # The Trainer's own runtime excludes engine set-up (DeepSpeed builds ops on first use), so
    # tokens/s measures training itself; wall_time_s counts everything.
    result = trainer.train(resume_from_checkpoint=resume_from and str(resume_from))
    artifact_dir = workdir / "artifact"
    eval_loss = trainer.evaluate()["eval_loss"]
    cfg.method.spec.save_trained(trainer, cfg.method, str(artifact_dir))
    own = {
        "tokens_trained": counter.tokens,
        "train_time_s": result.metrics["train_runtime"],
        "checkpoint_time_s": trainer.checkpoint_time_s,
    }
    own |= {"eval_loss": eval_loss}
    return _Trained(trainer, artifact_dir, before, quantization, trainable, own)


def _gather(own: dict, rank: Rank) -> list[dict]:
    """Every rank's own measurements, in rank order (a single process: its own)."""
    if rank.world == 1:
        return [own]
    import torch.distributed as dist

    ranks: list[dict] = [{} for _ in range(rank.world)]
    dist.all_gather_object(ranks, own)
    return ranks


def _score(cfg: Config, inputs: TrialInputs, trained: _Trained, run: RunRecorder) -> dict:
    """Quality over every held-out example, forgetting, and the artifact (rank 0 only)."""
    from ftsweep.data.forgetting import forgetting_metrics, window_losses
    from ftsweep.methods.loading import compute_precision, folder_size_mb

    model = trained.trainer.model
    if cfg.method.spec.needs_gathered_weights(cfg.method):
        from transformers import AutoModelForCausalLM
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        # ZeRO-3 keeps weights partitioned: generate from the gathered checkpoint it saved, as
        # a plain copy (loading under the live ZeRO-3 config would partition it again).
        unset_hf_deepspeed_config()
        model = AutoModelForCausalLM.from_pretrained(trained.artifact_dir, use_safetensors=True)
    with compute_precision(cfg):
        scores = score_and_log_examples(cfg, model, inputs, run, trained.artifact_dir.parent)
        # Against the unquantised base for every method: a QLoRA run's forgetting includes what
        # quantising cost (`quantization_loss` is that part alone).
        forgetting = forgetting_metrics(
            window_losses(model, windows=inputs.general_windows), trained.general_before
        )
    # The Trainer also pickles its arguments beside the weights: a pickle is never an artifact
    # (merge refuses anything but safetensors and JSON), and nothing needs it.
    (trained.artifact_dir / "training_args.bin").unlink(missing_ok=True)
    if cfg.method.is_adapter:
        run.log_artifacts(trained.artifact_dir, "adapter")
    return {
        **scores,
        "eval_loss": trained.own["eval_loss"],
        **forgetting,
        **trained.quantization,
        "trainable_params": trained.trainable,
        "artifact_mb": folder_size_mb(trained.artifact_dir),
    }
