"""A merged model logged with MLflow's transformers flavour and registered in the tracking
store's Model Registry (`register_merged`), so that `mlflow models serve -m models:/NAME/VERSION`
serves it.

The model is a LoggedModel whose source run is the run that trained the adapter, in that run's
experiment, and that run lists it among its outputs. The run itself is not reopened: a finished
run started again turns RUNNING and gets a new end time, and logging under it writes the serving
settings into its params and copies its metrics; a new run instead would be one more run of the
sweep for the report to count. The version's tags carry the run's quality, cost and config.

How MLflow's flavour is called here, and why (MLflow 3.17, transformers 5):
- from the merged model in memory (`{"model", "tokenizer"}`), not from the checkpoint folder:
  logging a folder reads the pipeline class as `check_task(task)[1]["impl"].__name__`, and
  transformers 5 gives that class as a dotted string, so it fails;
- with its pip requirements named: the flavour's defaults pin torchvision, and fail where it is
  not installed;
- with a model card of its own, and the model named by its checkpoint folder: the flavour
  otherwise fetches the card and licence of the model's name from the hub;
- without an input example: checking it would load a second copy of the model to generate once.

Models with a chat template (both built-in ones) are served as `llm/v1/chat`: the template
frames the messages as it framed the training prompts. Others as `llm/v1/completions`, whose
prompt is sent as the model was trained on it (the prompt, then a newline). Replies are greedy
and as long as the run's `max_new_tokens`, as when the run was scored; a request's `max_tokens`
overrides it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from ftsweep.adapters.merge import MERGED_QUALITY
from ftsweep.config import ConfigError
from ftsweep.tracking.record import TAG_TRIAL_ID
from ftsweep.tracking.store import get_client

if TYPE_CHECKING:
    from ftsweep.adapters.merge import Merged
    from ftsweep.report.runs import RunRow

# A plain name: it is typed in `models:/NAME/VERSION` and on command lines (MLflow itself only
# refuses '/' and ':').
_NAME = re.compile(r"[\w][\w.-]*")
# The MLflow name of the logged model, inside the LoggedModel's artifacts.
MODEL_NAME = "merged-model"
CHAT_TASK = "llm/v1/chat"
COMPLETIONS_TASK = "llm/v1/completions"
# What the served model needs, pinned to what logged it (mlflow pins itself).
REQUIREMENTS = ("transformers", "torch", "accelerate")
# The run's numbers copied onto the model version, under the names the run logged them by.
METRIC_TAGS = (
    "test_quality",
    "test_quality_ci_low",
    "test_quality_ci_high",
    MERGED_QUALITY,
    f"{MERGED_QUALITY}_ci_low",
    f"{MERGED_QUALITY}_ci_high",
    "cost_usd",
    "wall_time_s",
)
PARAM_TAGS = ("method", "lora_r", "lora_alpha", "learning_rate", "model", "data")
TAG_SOURCE_RUN = "ftsweep.source_run_id"
TAG_SWEEP = "ftsweep.sweep"


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    model_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def check_model_name(name: str) -> str:
    """`register=NAME` as a registered model name, or a ConfigError saying what a name is."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"register={name}: not a registered model name: letters, digits, _ . - only, "
            "starting with a letter, digit or _, no '..' (it is served as models:/NAME/VERSION)"
        )
    return name


def version_tags(
    row: RunRow, experiment: str, merged_quality: dict[str, float] | None = None
) -> dict[str, str]:
    """The run's test quality (and the merged model's, where scored now or recorded before),
    cost, wall time, config and ids, as model version tags; what the run lacks is left out."""
    metrics = row.metrics | (merged_quality or {})
    tags = {
        key: f"{metrics[key]:.6g}"
        for key in METRIC_TAGS
        if key in metrics and math.isfinite(metrics[key])
    }
    tags |= {
        key: row.params[key] for key in PARAM_TAGS if row.params.get(key) not in (None, "None")
    }
    tags[TAG_SOURCE_RUN] = row.run_id
    if row.tags.get(TAG_TRIAL_ID):
        tags[TAG_TRIAL_ID] = row.tags[TAG_TRIAL_ID]
    tags[TAG_SWEEP] = experiment
    return tags


def serving_task(tokenizer) -> str:
    return CHAT_TASK if getattr(tokenizer, "chat_template", None) else COMPLETIONS_TASK


def generation_settings(row: RunRow, tokenizer, default_max_new_tokens: int) -> dict:
    """How the served model generates: as the run's scoring did (`ftsweep.data.evaluate`)."""
    from ftsweep.data.tokenize import stop_token_ids

    recorded = row.params.get("max_new_tokens")
    settings = {
        "max_new_tokens": int(recorded)
        if recorded not in (None, "None")
        else default_max_new_tokens,
        "do_sample": False,
        "eos_token_id": stop_token_ids(tokenizer),
    }
    if tokenizer.pad_token_id is not None:
        settings["pad_token_id"] = tokenizer.pad_token_id
    return settings


def pip_requirements() -> list[str]:
    pins = []
    for package in REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            # A local build label (torch's +cpu, +cu128) is no version an index has.
            pins.append(f"{package}=={metadata.version(package).split('+', 1)[0]}")
    return pins


def model_card(row: RunRow, name: str, experiment: str, tags: dict[str, str]):
    from huggingface_hub import ModelCard

    lines = [
        "---",
        "library_name: transformers",
        f"tags: [ftsweep, {row.method}]",
        "---",
        f"# {name}",
        "",
        f"The adapter of run {row.run_id} ({row.name}) of sweep {experiment}, merged into its "
        f"base model {row.params.get('model', '?')} by `ftsweep merge`.",
        "",
        *(f"- {key}: {value}" for key, value in tags.items()),
    ]
    return ModelCard("\n".join(lines))


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `uri` while the flavour logs and registers."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again


def register_merged(
    tracking_uri: str,
    merged: Merged,
    name: str,
    experiment: str,
    default_max_new_tokens: int,
    merged_quality: dict[str, float] | None = None,
) -> Registered:
    """Log the merged model (see the module's docstring) and register it as a new version of
    `name`, tagged with `version_tags`. Registering again makes the next version."""
    import mlflow
    import mlflow.transformers
    from mlflow.entities import LoggedModelOutput

    check_model_name(name)
    row = merged.row
    client = get_client(tracking_uri)
    tags = version_tags(row, experiment, merged_quality)
    experiment_id = client.get_run(row.run_id).info.experiment_id
    tokenizer = merged.tokenizer
    # Named by its folder (an absolute path, never a hub id): nothing is looked up on the hub.
    merged.model.name_or_path = str(merged.out_dir.resolve())
    with _tracking(tracking_uri):
        logged = mlflow.initialize_logged_model(
            name=MODEL_NAME,
            source_run_id=row.run_id,
            tags=tags,
            params=row.params,
            experiment_id=experiment_id,
        )
        mlflow.transformers.log_model(
            {"model": merged.model, "tokenizer": tokenizer},
            name=MODEL_NAME,
            model_id=logged.model_id,
            task=serving_task(tokenizer),
            model_config=generation_settings(row, tokenizer, default_max_new_tokens),
            model_card=model_card(row, name, experiment, tags),
            pip_requirements=pip_requirements(),
        )
        version = mlflow.register_model(f"models:/{logged.model_id}", name, tags=tags)
    step = int(float(row.params.get("max_steps", 0)))
    client.log_outputs(row.run_id, [LoggedModelOutput(logged.model_id, step)])
    client.update_model_version(
        name,
        version.version,
        description=f"run {row.run_id} ({row.name}) of sweep {experiment}, merged",
    )
    return Registered(name, int(version.version), logged.model_id)


def registered_lines(registered: Registered, tracking_uri: str) -> list[str]:
    """What `ftsweep merge register=NAME` prints: the version made and how to serve it."""
    from ftsweep.tracking.redact import redact_uri

    version = registered.version
    made = (
        "a new registered model"
        if version == 1
        else f"{registered.name} already had version{'s 1 to' if version > 2 else ''} {version - 1}"
    )
    return [
        f"registered: {registered.uri} (version {version}: {made})",
        f"  serve: MLFLOW_TRACKING_URI={redact_uri(tracking_uri)} "
        f"mlflow models serve -m {registered.uri} --env-manager local",
    ]
