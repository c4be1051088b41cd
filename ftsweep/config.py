"""The typed schema of a composed config, and how a config is composed.

Hydra composes `conf/` (plus a sweep from `sweeps/`) with the user's overrides; pydantic then
checks every value before anything runs. A bad value becomes one `ConfigError` line that names
the key, the value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
SWEEPS_DIR = PROJECT_ROOT / "sweeps"

METHODS = ("full", "lora", "qlora")
LORA_METHODS = ("lora", "qlora")
TARGET_PRESETS = ("attention", "mlp", "all-linear")


class ConfigError(ValueError):
    """A config value that cannot run; its message is meant for the user as it is."""


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt knob must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchitectureConfig(_Strict):
    """Shape numbers of a model, enough to estimate memory and FLOPs without weights."""

    num_params: Annotated[int, Field(gt=0)]
    hidden_size: Annotated[int, Field(gt=0)]
    num_layers: Annotated[int, Field(gt=0)]
    num_heads: Annotated[int, Field(gt=0)]
    num_kv_heads: Annotated[int, Field(gt=0)]
    intermediate_size: Annotated[int, Field(gt=0)]
    vocab_size: Annotated[int, Field(gt=0)]


class ModelConfig(_Strict):
    name: str
    # "builtin:NAME" is prepared into the cache from a package; anything else is a hub id or a folder.
    name_or_path: str
    trust_remote_code: bool = False
    architecture: ArchitectureConfig | None = None


class MethodConfig(_Strict):
    name: Literal["full", "lora", "qlora"]
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # LoRA-type methods only.
    lora_r: Annotated[int, Field(ge=1, le=4096)] | None = None
    lora_alpha: Annotated[float, Field(gt=0)] | None = None
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    target_modules: Literal["attention", "mlp", "all-linear"] | list[str] | None = None
    # Full fine-tuning only: DeepSpeed ZeRO stage and CPU offload of optimizer states.
    zero_stage: Literal[0, 2, 3] | None = None
    offload: bool = False
    # Full fine-tuning only: data-parallel workers (Ray Train); 1 = this process.
    num_workers: Annotated[int, Field(ge=1, le=1024)] = 1

    @model_validator(mode="after")
    def _knobs_fit_method(self) -> MethodConfig:
        if self.name in LORA_METHODS:
            for key in ("lora_r", "lora_alpha", "target_modules"):
                if getattr(self, key) is None:
                    raise ValueError(f"method.{key} is required for method {self.name}")
            if self.zero_stage not in (None, 0):
                raise ValueError(
                    f"method.zero_stage={self.zero_stage} applies to full fine-tuning only; "
                    f"set it to null for {self.name}"
                )
            if self.num_workers != 1:
                raise ValueError(
                    f"method.num_workers={self.num_workers} applies to full fine-tuning only"
                )
            if isinstance(self.target_modules, list) and not self.target_modules:
                raise ValueError("method.target_modules is an empty list; name at least one module")
        return self

    @property
    def is_lora(self) -> bool:
        return self.name in LORA_METHODS


class DataConfig(_Strict):
    name: str
    # Built-in generated tasks, or `jsonl` for the user's own file or folder (data.path).
    task: Literal["format", "knowledge", "domain", "jsonl"]
    # Built-in tasks: examples generated; user data: at most this many are used.
    num_train: Annotated[int, Field(ge=1)] = 512
    num_eval: Annotated[int, Field(ge=1)] = 32
    seed: int = 0
    # Built-in tasks only; None means medium.
    difficulty: Literal["easy", "medium", "hard"] | None = None
    # User data (task jsonl) only; None means the default named beside each.
    path: str | None = None
    eval_path: str | None = None
    format: Literal["auto", "messages", "alpaca", "prompt_completion", "text"] | None = None  # auto
    eval_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None  # 0.1
    metric: Literal["token_f1", "exact"] | None = None  # token_f1

    @model_validator(mode="after")
    def _knobs_fit_task(self) -> DataConfig:
        user_knobs = ("path", "eval_path", "format", "eval_fraction", "metric")
        if self.task == "jsonl":
            if not self.path:
                raise ValueError(
                    "data.path is required for data=jsonl: a .jsonl/.json/.parquet file, a folder "
                    "with train and eval files, or a saved Hugging Face dataset folder"
                )
            if self.difficulty is not None:
                raise ValueError(
                    f"data.difficulty={self.difficulty} applies to built-in tasks only, not data=jsonl"
                )
        else:
            for key in user_knobs:
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"data.{key}={getattr(self, key)!r} applies to data=jsonl only; "
                        f"task {self.task} generates its own examples"
                    )
        return self


class HardwareConfig(_Strict):
    name: str
    device: Literal["cpu", "cuda"]
    price_per_device_hour: Annotated[float, Field(ge=0)]
    price_source: str
    price_date: str
    memory_gb: Annotated[float, Field(gt=0)]
    peak_tflops: Annotated[float, Field(gt=0)]
    # Devices one trial occupies: CPU machines count as one device.
    devices_per_trial: Annotated[int, Field(ge=1)] = 1
    # Whether the device computes in bf16; those that do not (T4) train in fp16 mixed precision.
    bf16: bool = True
    # Share of peak_tflops a fine-tuning step reaches (model FLOPs utilisation); the plan's hours
    # divide by it until measured runs calibrate it.
    mfu: Annotated[float, Field(gt=0, le=1)] = 0.4


class TrainConfig(_Strict):
    max_steps: Annotated[int, Field(ge=1)]
    batch_size: Annotated[int, Field(ge=1)]
    grad_accum: Annotated[int, Field(ge=1)] = 1
    seq_len: Annotated[int, Field(ge=16, le=32768)]
    seed: int = 0
    # How often (in optimizer steps) the train loss is reported; eval runs at the end.
    log_every: Annotated[int, Field(ge=1)] = 5
    eval_batch_size: Annotated[int, Field(ge=1)] = 16
    max_new_tokens: Annotated[int, Field(ge=1, le=1024)] = 48
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Held-out eval_loss every N steps, reported to the scheduler (ASHA rungs); null = end only.
    eval_every: Annotated[int, Field(ge=1)] | None = None
    # CPU threads per trial (None: what the process is given).
    threads: Annotated[int, Field(ge=1)] | None = None
    # A resumable checkpoint every N steps, so a trial whose worker died resumes from it; None: never.
    checkpoint_every: Annotated[int, Field(ge=1)] | None = None


class TrackingConfig(_Strict):
    # None: a SQLite store at RESULTS/mlflow.db.
    uri: str | None = None
    experiment: str | None = None


class SearchSubspace(_Strict):
    """One method's part of a sweep.

    In `params`, a list is a grid axis (a categorical for random/optuna), a mapping
    `{low, high, log}` is a range (random/optuna only), and a scalar is fixed.
    """

    method: Literal["full", "lora", "qlora"]
    params: dict[str, Any] = {}


class AshaConfig(_Strict):
    # Rungs are measured in training tokens, so fast and slow methods meet at equal data.
    grace_period_tokens: Annotated[int, Field(ge=1)] = 4096
    reduction_factor: Annotated[float, Field(gt=1)] = 3


class SweepConfig(_Strict):
    name: str = "adhoc"
    description: str = ""
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    # Trials drawn by random/optuna (grid runs every point of its space).
    num_samples: Annotated[int, Field(ge=1)] = 1
    space: list[SearchSubspace] = []
    # Each grid configuration repeated with this many seeds (train.seed, train.seed + 1, ...).
    seeds: Annotated[int, Field(ge=1)] = 1
    scheduler: Literal["none", "asha"] = "none"
    asha: AshaConfig = AshaConfig()
    max_concurrent_trials: Annotated[int, Field(ge=1)] = 1
    cpus_per_trial: Annotated[int, Field(ge=1)] | None = None
    # Retries of a trial whose failure may be transient (a lost worker); 0 means none.
    max_failures: Annotated[int, Field(ge=0)] = 0
    # No trial starts whose estimated cost would take the sweep past these; null = no limit.
    budget_usd: Annotated[float, Field(gt=0)] | None = None
    time_budget_s: Annotated[float, Field(gt=0)] | None = None
    # Launch trials the memory plan says cannot fit the hardware.
    force: bool = False
    # Measure the untrained base model on the task once (a run with method=none), for lift.
    baseline: bool = True

    @model_validator(mode="after")
    def _fits_algorithm(self) -> SweepConfig:
        if self.algorithm != "grid" and self.seeds > 1:
            raise ValueError(
                f"sweep.seeds={self.seeds} needs sweep.algorithm=grid; repeat the best "
                "configurations of a random/optuna sweep with a grid sweep"
            )
        if self.algorithm == "grid":
            for sub in self.space:
                for key, value in sub.params.items():
                    if isinstance(value, dict):
                        raise ValueError(
                            f"sweep.space ({sub.method}).params.{key}={value}: a range needs "
                            "sweep.algorithm=random or optuna; grid takes lists"
                        )
        return self


class Config(_Strict):
    model: ModelConfig
    method: MethodConfig
    data: DataConfig
    hardware: HardwareConfig
    train: TrainConfig
    tracking: TrackingConfig = TrackingConfig()
    sweep: SweepConfig = SweepConfig()
    results_dir: str = "results"

    @property
    def results_path(self) -> Path:
        path = Path(self.results_dir).expanduser()
        return path if path.is_absolute() else (Path.cwd() / path)

    def with_method(self, **changes: Any) -> Config:
        """A copy whose method knobs are replaced (and validated again)."""
        method = self.method.model_dump() | changes
        return validate({**self.model_dump(), "method": method})


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling)"
    if error["type"] == "missing":
        return f"{key}: required but not set"
    value = error.get("input")
    if isinstance(value, dict):
        return message
    return f"{key}={value!r}: {message}"


def validate(raw: dict[str, Any]) -> Config:
    """Check a plain dict against the schema; every problem is named in the ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # A union (e.g. preset name or list) reports one error per branch; keep the first per key.
        seen: dict[tuple, str] = {}
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not isinstance(p, str) or not p.startswith(("list[", "literal["))
            )
            seen.setdefault(loc, _describe({**err, "loc": loc}))
        raise ConfigError("; ".join(seen.values())) from None


def compose(overrides: list[str] | None = None) -> Config:
    """Compose conf/ with Hydra overrides (`method=lora method.lora_r=8 sweep=smoke`) and validate."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = [_as_schema_override(o) for o in overrides or []]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
        raw = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc)) from None
    raw.pop("hydra", None)
    return validate(raw)


def _as_schema_override(override: str) -> str:
    """`sweep.seeds=3` works even where no YAML file spells the key out: the schema has it.

    Keys the schema knows become Hydra's add-or-override (`++key=value`); anything else stays
    as written, so Hydra reports an unknown key with what is allowed.
    """
    key, sep, _ = override.partition("=")
    if not sep or "." not in key or key.startswith(("+", "~")):
        return override
    parent, _, leaf = key.rpartition(".")
    return f"++{override}" if leaf in _allowed_keys(parent) else override


def _allowed_keys(dotted: str) -> list[str]:
    """The keys the schema allows under a dotted path such as `method`."""
    model: type[BaseModel] = Config
    for part in dotted.split(".") if dotted else []:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _hydra_message(exc: Exception) -> str:
    """One line from Hydra's multi-line errors, with what is allowed."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    missing_choice = re.search(r"Could not (?:find|load) '([\w-]+)/([^']+)'", text)
    if missing_choice:
        group, name = missing_choice.groups()
        folder = CONF_DIR / group
        allowed = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        return f"{group}={name}: no such {group} (allowed: {', '.join(allowed)})"
    unknown_key = re.search(r"Could not (?:override|append to) '([^']+)'", text)
    if unknown_key:
        key = unknown_key.group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _allowed_keys(parent)
        hint = (
            f" (allowed under {parent or 'the top level'}: {', '.join(allowed)})" if allowed else ""
        )
        return f"{key}: unknown key{hint}"
    return first
