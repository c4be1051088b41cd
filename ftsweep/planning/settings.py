"""What the plan sizes, from a config: the model's shape, batch, precision, adapter and workload.

`settings_for(cfg, precision, workload)` gathers them (`Settings`); `plan_precision` says which
precision a device trains in; `adapter_of` the LoRA knobs adapters are sized with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ftsweep.config import ArchitectureConfig, Config, ConfigError, HardwareConfig
from ftsweep.config.compose import compose_group
from ftsweep.methods import MethodKnobs, all_methods
from ftsweep.methods.lora import TARGET_PRESETS
from ftsweep.planning.memory import Adapter


@dataclass(frozen=True)
class Workload:
    """What one run trains on, for its hours: the guide's "5K examples" by default."""

    examples: int = 5000
    tokens_per_example: int = 512
    epochs: int = 3

    def tokens(self, seq_len: int) -> int:
        # examples x tokens each (cut at seq_len, as training cuts them) x epochs
        return self.examples * self.context(seq_len) * self.epochs

    def context(self, seq_len: int) -> int:
        return min(self.tokens_per_example, seq_len)


@dataclass(frozen=True)
class Settings:
    """The numbers one estimate needs, whatever the method and hardware."""

    model: str
    arch: ArchitectureConfig
    precision: str
    batch_size: int
    seq_len: int
    grad_accum: int
    workload: Workload
    adapter: Adapter
    # method.optimizer where the method has one (full fine-tuning), else AdamW
    optimizer: str = "adamw"


def settings_for(cfg: Config, precision: str, workload: Workload) -> Settings:
    """cfg's numbers at `precision`; a ConfigError when the model has no architecture block or
    its adapters' modules are not Llama-style projections."""
    arch = cfg.model.architecture
    if arch is None:
        raise ConfigError(
            f"model.architecture: {cfg.model.name} has none; add num_params, hidden_size, num_layers, "
            f"num_heads, num_kv_heads, intermediate_size and vocab_size to conf/model/{cfg.model.name}.yaml"
        )
    return Settings(
        model=cfg.model.name,
        arch=arch,
        precision=precision,
        batch_size=cfg.train.batch_size,
        seq_len=cfg.train.seq_len,
        grad_accum=cfg.train.grad_accum,
        workload=workload,
        adapter=adapter_of(cfg),
        optimizer=getattr(cfg.method, "optimizer", "adamw"),
    )


def plan_precision(cfg: Config, hardware: HardwareConfig, override: str | None) -> str:
    """The override, else train.precision on CPU, else 16-bit mixed precision on GPUs."""
    if override is not None:
        return override
    if hardware.device == "cpu":
        return cfg.train.precision
    return "bf16" if hardware.bf16 else "fp16"


def adapter_of(cfg: Config) -> Adapter:
    """The LoRA knobs the plan sizes adapters with: the config's, or (for a method without
    adapters) the first registered adapter method's defaults, conf/method/lora.yaml."""
    knobs = cfg.method if cfg.method.is_adapter else _default_adapter_knobs()
    names = knobs.target_names
    allowed = TARGET_PRESETS["all-linear"]
    unknown = [t for t in names if t not in allowed]
    if unknown:
        raise ConfigError(
            f"method.target_modules={','.join(unknown)}: the plan sizes Llama-style projections only "
            f"(allowed: {', '.join(allowed)} or a preset: {', '.join(TARGET_PRESETS)})"
        )
    return Adapter(
        r=knobs.lora_r,
        targets=tuple(names),
        dropout=knobs.lora_dropout,
        label=knobs.targets_label,
        dora=knobs.use_dora,
        init=knobs.init,
    )


@functools.cache  # composed once per process: every non-adapter trial's estimate asks for it
def _default_adapter_knobs() -> MethodKnobs:
    method = next(m for m in all_methods() if m.is_adapter)
    return method.knobs.model_validate(compose_group("method", method.name))
