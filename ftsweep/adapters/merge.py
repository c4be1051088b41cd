"""Merging one of a sweep's adapters into its base model for deployment (`merge_adapter`).

Merging loads the base model the run names, applies the adapter, folds it into the weights
(`merge_and_unload`) and saves a plain transformers checkpoint: config, safetensors, tokenizer.
A QLoRA adapter is merged into the full-precision base: the 4-bit base it trained on is an
approximation of those weights, and a merged 4-bit checkpoint would lose the adapter's precision.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ftsweep.adapters.listing import ADAPTER_PATH, adapter_files, recommended_adapter_run
from ftsweep.config import ConfigError
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.tracking.store import get_client

# The sentence whose logits must agree before and after merging.
CHECK_TEXT = "Turn this into JSON: order 1234 for two blue mugs, shipped to Lyon."
# Largest logit difference a merge may introduce: float rounding only.
MERGE_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.05}


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
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"out={out_dir} is not empty; choose a new folder for the merged model")
    row = _pick_run(load_rows(tracking_uri, experiment), run_id, experiment)
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
    return out_dir
