"""Merging one of a sweep's adapters into its base model for deployment (`merge_adapter`).

Merging loads the base model the run names, applies the adapter, folds it into the weights
(`merge_and_unload`) and saves a plain transformers checkpoint: config, safetensors, tokenizer.
A QLoRA adapter is merged into the full-precision base: the 4-bit base it trained on is an
approximation of those weights, and a merged 4-bit checkpoint would lose the adapter's precision.
The merged model is then not the one the run scored (adapter on the 4-bit base), so `ftsweep
merge` scores it again on the run's test split (`score_merged`) and records that quality on
the run beside the adapter's (`record_merged_quality`: `merged_test_quality` and its interval).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ftsweep.adapters.listing import ADAPTER_PATH, adapter_files, recommended_adapter_run
from ftsweep.config import ConfigError
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.tracking.store import get_client

if TYPE_CHECKING:
    from ftsweep.config import Config

# The sentence whose logits must agree before and after merging.
CHECK_TEXT = "Turn this into JSON: order 1234 for two blue mugs, shipped to Lyon."
# Largest logit difference a merge may introduce: float rounding only.
MERGE_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.05}
# What the merged model's quality on the run's test split is recorded as, beside `test_quality`.
MERGED_QUALITY = "merged_test_quality"
# The run params a run's inputs are rebuilt from besides `model` and `data.*` (`run_config`).
RECORDED_TRAIN_KEYS = ("seed", "seq_len", "max_new_tokens", "eval_batch_size")


class MergeMismatch(RuntimeError):
    """The merged model's outputs differ from the adapter model's beyond rounding."""


def _pick_run(rows: list[RunRow], run_id: str | None, experiment: str) -> RunRow:
    """The run named by id (or a unique prefix of it), else the recommended LoRA-type run."""
    adapters = [r for r in rows if r.is_adapter]
    known = ", ".join(r.run_id[:12] for r in adapters) or "none"
    if run_id is None:
        chosen = recommended_adapter_run(rows)
        if chosen is None:
            raise ConfigError(
                f"sweep {experiment!r} has no finished LoRA or QLoRA run to merge (adapter runs: {known})"
            )
        return chosen
    matches = [r for r in rows if r.run_id.startswith(run_id)] if len(run_id) >= 4 else []
    if len(matches) != 1:
        why = "matches several runs" if matches else "is no run"
        raise ConfigError(f"run={run_id} {why} of sweep {experiment!r} (adapter runs: {known})")
    row = matches[0]
    if not row.is_adapter:
        raise ConfigError(
            f"run={run_id} is a {row.method} fine-tuning run: it has no adapter (adapter runs: {known})"
        )
    return row


def base_model_path(
    model_name: str, trust_remote_code: bool = False, recorded_path: str | None = None
) -> tuple[str, bool]:
    """The base checkpoint a run's `model` param names, and whether to run its remote code.

    The param is read back from a store anyone with write access to it can forge, so it is
    only ever a name: checked against the model options (`conf/model/NAME.yaml`, shipped or
    the user's), and that option's file is read as data, never composed as a Hydra override.
    Remote code runs only when the caller asks (`ftsweep merge trust_remote_code=true`) and
    the model's own config says it needs it. `recorded_path`, the run's `model.path` param, is
    never loaded: a run that trained on another path than the option names is refused.
    """
    from ftsweep.config import ModelConfig, compose_group
    from ftsweep.config.sources import stored_option
    from ftsweep.models.builtin import resolve_model_path

    name = stored_option("model", model_name, "the run's `model` param")
    model = ModelConfig.model_validate(compose_group("model", name))
    if recorded_path is not None and recorded_path != model.name_or_path:
        raise ConfigError(
            f"the run trained on model.path={recorded_path!r}, but model={name} is "
            f"{model.name_or_path!r} here: merging would fold the adapter into another base"
        )
    if model.trust_remote_code and not trust_remote_code:
        raise ConfigError(
            f"model={name} runs its own code (trust_remote_code in its conf/model file): "
            "pass trust_remote_code=true to ftsweep merge if you trust that code"
        )
    return resolve_model_path(model.name_or_path), model.trust_remote_code and trust_remote_code


def check_adapter_files(adapter_dir: Path) -> None:
    """A downloaded adapter holds safetensors weights and JSON only: nothing pickled."""
    adapter_dir = Path(adapter_dir)
    pickled = sorted(
        p.name
        for p in adapter_dir.rglob("*")
        if p.is_symlink() or (p.is_file() and p.suffix not in (".safetensors", ".json", ".md"))
    )
    if pickled or not (adapter_dir / "adapter_model.safetensors").is_file():
        raise ConfigError(
            f"the run's adapter is not a safetensors adapter (found {', '.join(pickled) or 'no adapter_model.safetensors'}): not loaded"
        )


def _logits(model, tokenizer):
    import torch

    batch = tokenizer(CHECK_TEXT, return_tensors="pt").to(model.device)
    with torch.no_grad():
        return model(**batch).logits.float()


def _merged(row: RunRow, tracking_uri: str, base_path: str, trust_remote_code: bool):
    """The run's adapter folded into its base: (merged model, tokenizer, largest logit change)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftsweep.methods.loading import dtype_of

    precision = row.params.get("precision", "fp32")
    client = get_client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ftsweep-adapter-") as tmp:
        if not adapter_files(client, row.run_id):
            raise ConfigError(
                f"run {row.run_id} ({row.name}) logged no adapter; it may have failed before saving one"
            )
        adapter_dir = client.download_artifacts(row.run_id, ADAPTER_PATH, tmp)
        check_adapter_files(Path(adapter_dir))
        tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=trust_remote_code)
        base = AutoModelForCausalLM.from_pretrained(
            base_path,
            dtype=dtype_of(precision) if precision in ("fp32", "bf16", "fp16") else torch.float32,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        )
        model = PeftModel.from_pretrained(base, adapter_dir, use_safetensors=True)
        model.eval()
        before = _logits(model, tokenizer)
        merged = model.merge_and_unload()
        after = _logits(merged, tokenizer)
    return merged, tokenizer, (before - after).abs().max().item()


@dataclass
class Merged:
    """A run's adapter folded into its base and saved: where, from which run, and the model."""

    out_dir: Path
    row: RunRow
    model: object
    tokenizer: object


def choose_run(tracking_uri: str, experiment: str, run_id: str | None) -> RunRow:
    """The run named by id (or a unique prefix of it), else the sweep's recommended one."""
    return _pick_run(load_rows(tracking_uri, experiment), run_id, experiment)


def merge_adapter(
    tracking_uri: str,
    experiment: str,
    run_id: str | None,
    out_dir: Path,
    trust_remote_code: bool = False,
) -> Path:
    """Merge a run's adapter (default: the recommended one) into its base; returns out_dir.

    Checks that the merged model's logits match the adapter model's on a sample sentence
    and raises MergeMismatch otherwise. The base is the model option the run names
    (`base_model_path`); its remote code runs only with `trust_remote_code`.
    """
    _check_out_dir(Path(out_dir))
    row = choose_run(tracking_uri, experiment, run_id)
    return merge_run(row, tracking_uri, Path(out_dir), trust_remote_code).out_dir


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"out={out_dir} is not empty; choose a new folder for the merged model")


def merge_run(
    row: RunRow, tracking_uri: str, out_dir: Path, trust_remote_code: bool = False
) -> Merged:
    """Merge this run's adapter into its base and save it to out_dir (see `merge_adapter`)."""
    _check_out_dir(out_dir)
    model_name = row.params.get("model")
    if not model_name:
        raise ConfigError(f"run {row.run_id} records no `model` param: its base model is unknown")
    base_path, remote_code = base_model_path(
        model_name, trust_remote_code, row.params.get("model.path")
    )
    merged, tokenizer, difference = _merged(row, tracking_uri, base_path, remote_code)
    precision = row.params.get("precision", "fp32")
    if difference > MERGE_TOLERANCE.get(precision, MERGE_TOLERANCE["fp32"]):
        raise MergeMismatch(
            f"merging run {row.run_id} changed the logits by up to {difference:.3g}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return Merged(out_dir, row, merged, tokenizer)


# --- a QLoRA run's merged model, scored again -------------------------------------------------


def scored_another_model(row: RunRow) -> bool:
    """Whether the run scored its adapter on a quantised base, so that merging into the
    unquantised one gives a model the run never scored."""
    from ftsweep.methods import find_method

    method = find_method(row.method)
    return method is not None and method.quantized


def run_config(cfg: Config, row: RunRow) -> Config:
    """The config the run scored with, rebuilt from its params over `cfg`: the model option it
    names (read as data, as `base_model_path` reads it), its data settings and how it generated
    replies. A ConfigError when the params cannot say, or the data changed since the run."""
    from ftsweep.config import DataConfig, compose_group, validate
    from ftsweep.config.inputs import check_data
    from ftsweep.config.sources import stored_option
    from ftsweep.tracking.fingerprint import data_fingerprint

    params = row.params
    model = stored_option("model", params.get("model"), "the run's `model` param")
    data = {
        "name": params.get("data"),
        **{
            key: _param_value(params[f"data.{key}"])
            for key in DataConfig.model_fields
            if f"data.{key}" in params
        },
    }
    train = {key: params[key] for key in RECORDED_TRAIN_KEYS if key in params}
    raw = cfg.model_dump()
    raw |= {"model": compose_group("model", model), "data": data, "train": raw["train"] | train}
    try:
        rebuilt = validate(raw)
    except ConfigError as exc:
        raise ConfigError(f"run {row.run_id}'s params do not rebuild its inputs: {exc}") from None
    check_data(rebuilt.data)
    recorded = params.get("data.fingerprint")
    if recorded is not None and recorded != data_fingerprint(rebuilt.data):
        raise ConfigError(
            f"run {row.run_id}'s data changed since it ran (fingerprint {recorded}, now "
            f"{data_fingerprint(rebuilt.data)}): its test split cannot be scored again"
        )
    return rebuilt


def _param_value(text: str) -> str | None:
    # MLflow keeps params as str(value): an unset knob reads back as "None".
    return None if text == "None" else text


def score_merged(run_cfg: Config, merged: Merged) -> dict[str, float]:
    """The merged model's quality on the run's test split, with its 95% interval, under
    `MERGED_QUALITY` and its `_ci_low`/`_ci_high`."""
    import torch

    from ftsweep.data.evaluate import score_examples
    from ftsweep.data.intervals import mean_interval
    from ftsweep.trial.recipe import prepare_inputs

    inputs = prepare_inputs(run_cfg)
    max_new_tokens = getattr(inputs, "max_new_tokens", run_cfg.train.max_new_tokens)
    model = merged.model.to("cuda") if torch.cuda.is_available() else merged.model
    scores = score_examples(
        model,
        inputs.tokenizer,
        inputs.task,
        inputs.test_examples,
        run_cfg.train.eval_batch_size,
        max_new_tokens,
    )
    interval = mean_interval(scores)
    return {
        MERGED_QUALITY: interval.estimate,
        f"{MERGED_QUALITY}_ci_low": interval.low,
        f"{MERGED_QUALITY}_ci_high": interval.high,
    }


def record_merged_quality(tracking_uri: str, row: RunRow, quality: dict[str, float]) -> None:
    """The merged model's quality logged to the run, at its last step, beside its own
    metrics (which stay as they were)."""
    from ftsweep.tracking.record import RunRecorder

    step = int(float(row.params.get("max_steps", 0)))
    RunRecorder(get_client(tracking_uri), row.run_id).log_metrics(quality, step=step)


def quantised_base_note(row: RunRow) -> str:
    return (
        f"run {row.run_id[:12]} is {row.method}: its adapter trained and was scored on the "
        "4-bit base; merged into the unquantised base it is another model, scored again on "
        "the run's test split"
    )


def quality_lines(row: RunRow, merged_quality: dict[str, float]) -> list[str]:
    """The adapter's test quality as the run scored it and the merged model's, each with its
    95% interval."""
    adapter = row.logged_interval("test_")
    merged = (
        merged_quality[f"{MERGED_QUALITY}_ci_low"],
        merged_quality[f"{MERGED_QUALITY}_ci_high"],
    )
    return [
        f"  adapter on the 4-bit base: test_quality {_with_interval(row.test_quality, adapter)}",
        "  merged, unquantised base:  "
        f"{MERGED_QUALITY} {_with_interval(merged_quality[MERGED_QUALITY], merged)}",
        f"  recorded on run {row.run_id[:12]} as {MERGED_QUALITY} (_ci_low, _ci_high)",
    ]


def _with_interval(value: float, interval: tuple[float, float] | None) -> str:
    if not math.isfinite(value):
        return "not recorded"
    if interval is None:
        return f"{value:.3f} (no interval recorded)"
    return f"{value:.3f} [95% CI {interval[0]:.3f}, {interval[1]:.3f}]"
