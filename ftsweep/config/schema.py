"""The typed schema of a composed config.

pydantic checks every value before anything runs; a bad value becomes one `ConfigError` line
that names the key, the value and what is allowed. The schema knows no command line: Hydra
composition lives in `ftsweep.config.compose`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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


def _method_union():
    """The method knobs, discriminated by `name`: each registered method validates its own."""
    from ftsweep.methods import all_methods

    knobs = tuple(m.knobs for m in all_methods())
    return Annotated[Union[knobs], Field(discriminator="name")]  # noqa: UP007 (built at run time)


# One method's knobs; which class depends on `name` (see ftsweep.methods).
MethodConfig = _method_union()


class DataConfig(_Strict):
    name: str
    # Built-in generated tasks, or `jsonl` for the user's own file or folder (data.path).
    task: Literal["format", "knowledge", "domain", "jsonl"]
    # Built-in tasks: examples generated; user data: at most this many are used.
    num_train: Annotated[int, Field(ge=1)] = 512
    # Held-out examples: a validation split (`quality`, what selection uses) and a test split
    # (`test_quality`, never used for selection), both sharing nothing with training.
    num_eval: Annotated[int, Field(ge=1)] = 256
    num_test: Annotated[int, Field(ge=1)] = 256
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
    # Devices one trial occupies: CPU machines count as one device. On a GPU, a fraction below 1
    # shares one device between trials (Ray's fractional GPUs): each is priced at its share and
    # planned with that share of the device's memory and compute.
    devices_per_trial: Annotated[float, Field(gt=0)] = 1
    # Whether the device computes in bf16; those that do not (T4) train in fp16 mixed precision.
    bf16: bool = True
    # Share of peak_tflops a fine-tuning step reaches (model FLOPs utilisation); the plan's hours
    # divide by it until measured runs calibrate it.
    mfu: Annotated[float, Field(gt=0, le=1)] = 0.4
    # Between two devices of one machine, one direction, GB/s as NCCL reaches it (NVLink, PCIe;
    # on a CPU machine, gloo between processes): what ZeRO's collectives move over. The default
    # is PCIe 4.0 x16's ~25 GB/s.
    interconnect_gb_s: Annotated[float, Field(gt=0)] = 25.0
    # Device memory, GB/s: the optimizer step reads and writes every state it updates.
    memory_bandwidth_gb_s: Annotated[float, Field(gt=0)] = 1000.0
    # Where checkpoints are written, GB/s (a local NVMe disk ~1-2; cloud block storage less).
    disk_gb_s: Annotated[float, Field(gt=0)] = 1.0
    # How long, on average, a trial's machine runs before it is lost (a crash, a preemption):
    # what train.checkpoint_every=auto weighs a save against.
    mtbf_hours: Annotated[float, Field(gt=0)] = 24.0
    # Where a multi-worker trial's Ray Train workers go (Ray's placement strategies): `pack` as
    # few nodes as possible (NVLink inside a node beats the network between nodes), `spread`
    # over nodes where it can, `strict_spread` one worker per node (or it waits), `strict_pack`
    # all on one node (or it waits). Where a worker runs does not change what it computes, so
    # this is not part of a trial's id.
    worker_placement: Literal["pack", "spread", "strict_pack", "strict_spread"] = "pack"

    @field_validator("devices_per_trial")
    @classmethod
    def _whole_or_a_share(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(
                "above 1 it counts whole devices (2, 4, ...); below 1 it is a share of one"
            )
        return int(value) if value >= 1 else value

    @model_validator(mode="after")
    def _shares_only_gpus(self):
        if self.device == "cpu" and self.devices_per_trial != 1:
            raise ValueError(
                f"devices_per_trial={self.devices_per_trial:g} on device cpu: a CPU machine is one "
                "device (a trial's share of its cores is sweep.cpus_per_trial)"
            )
        return self


class TrainConfig(_Strict):
    max_steps: Annotated[int, Field(ge=1)]
    batch_size: Annotated[int, Field(ge=1)]
    grad_accum: Annotated[int, Field(ge=1)] = 1
    seq_len: Annotated[int, Field(ge=16, le=32768)]
    seed: int = 0
    # How often (in optimizer steps) the train loss is reported; eval runs at the end.
    log_every: Annotated[int, Field(ge=1)] = 5
    eval_batch_size: Annotated[int, Field(ge=1)] = 64
    # Greedy generation limit for the quality metric; auto: the longest held-out reference plus
    # a margin (ftsweep.data.generation_limit), so no reply is cut.
    max_new_tokens: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Windows of the shipped general text forgetting is measured on, spread over its sources;
    # None: all of them (38 windows, 9,298 SmolLM2 tokens). Fewer is faster and noisier.
    forgetting_windows: Annotated[int, Field(ge=1)] | None = None
    # Held-out eval_loss every N steps, reported to the scheduler (ASHA rungs); null = end only.
    eval_every: Annotated[int, Field(ge=1)] | None = None
    # CPU threads per trial (None: what the process is given).
    threads: Annotated[int, Field(ge=1)] | None = None
    # A resumable checkpoint every N steps, so a trial whose worker died resumes from it; None:
    # never; "auto": where a save's cost balances the attempts it saves
    # (`ftsweep.planning.checkpointing`).
    checkpoint_every: Annotated[int, Field(ge=1)] | Literal["auto"] | None = None


# A sweep's or experiment's name becomes a folder under RESULTS (reports, checkpoints, Ray
# state): a plain name, never a path.
_NAME = re.compile(r"[\w][\w.-]*")


def _plain_name(key: str, name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"not a plain name: letters, digits, _ . - only, starting with a letter, digit or _, "
            f"no '..' (it names folders under results_dir, e.g. {key}=my_sweep)"
        )
    return name


class TrackingConfig(_Strict):
    # None: a SQLite store at RESULTS/mlflow.db. Credentials never stay in it: compose moves
    # them to the environment (ftsweep.config.inputs.move_credentials).
    uri: str | None = None
    experiment: str | None = None

    @field_validator("experiment")
    @classmethod
    def _plain_experiment(cls, name: str | None) -> str | None:
        return None if name is None else _plain_name("tracking.experiment", name)


class SearchSubspace(_Strict):
    """One method's part of a sweep.

    In `params`, a list is a grid axis (a categorical for random/optuna), a mapping
    `{low, high, log}` is a range (random/optuna only), and a scalar is fixed.
    """

    method: str
    params: dict[str, Any] = {}

    @field_validator("method")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ftsweep.methods import method_names

        if name not in method_names():
            raise ValueError(f"no such method (allowed: {', '.join(method_names())})")
        return name


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
    # Optuna's random start-up trials before TPE models the space (Optuna's own default: 10).
    optuna_startup: Annotated[int, Field(ge=1)] = 10
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

    @field_validator("name")
    @classmethod
    def _plain_sweep_name(cls, name: str) -> str:
        return _plain_name("sweep.name", name)

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
    # Where what must outlive a node is kept (Ray's sweep and Ray Train state, every trial's
    # checkpoints): a URI pyarrow opens (s3://bucket/prefix), or None for folders under
    # results_dir (one disk, or a file system every node mounts at the same path).
    storage: str | None = None

    @model_validator(mode="after")
    def _method_fits_hardware(self) -> Config:
        # a knob that needs what the hardware lacks (LoftQ a CUDA GPU), named with what it has
        problem = self.method.spec.hardware_problem(self.method, self.hardware)
        if problem:
            raise ValueError(problem)
        return self

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
        if len(error["loc"]) == 2 and error["loc"][0] == "method" and error.get("method"):
            from ftsweep.methods import get_method

            knobs = sorted(set(get_method(error["method"]).knobs.model_fields) - {"name"})
            return f"{key}: not a knob of method {error['method']} (its knobs: {', '.join(knobs)})"
        return f"{key}: unknown key (check its spelling)"
    if error["type"] == "missing":
        return f"{key}: required but not set"
    value = error.get("input")
    if isinstance(value, dict):
        return message
    return f"{key}={value!r}: {message}"


def _method_names() -> tuple[str, ...]:
    from ftsweep.methods import method_names

    return method_names()


def _user_loc(loc: tuple) -> tuple:
    """An error's location as the user writes the key: union branches and the method's tag
    (`method.lora.lora_r`) left out."""
    names = _method_names()
    parts = [p for p in loc if not isinstance(p, str) or not p.startswith(("list[", "literal["))]
    if len(parts) > 1 and parts[0] == "method" and parts[1] in names:
        del parts[1]
    return tuple(parts)


def validate(raw: dict[str, Any]) -> Config:
    """Check a plain dict against the schema; every problem is named in the ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # A union (e.g. preset name or list) reports one error per branch; keep the first per key.
        seen: dict[tuple, str] = {}
        for err in exc.errors():
            loc = _user_loc(err["loc"])
            if err["type"] == "union_tag_invalid":
                err = {**err, "loc": (*loc, "name"), "input": err["input"].get("name")}
                err["msg"] = f"no such method (allowed: {', '.join(_method_names())})"
                loc = err["loc"]
            method = (
                raw.get("method", {}).get("name") if isinstance(raw.get("method"), dict) else None
            )
            seen.setdefault(loc, _describe({**err, "loc": loc, "method": method}))
        raise ConfigError("; ".join(seen.values())) from None
