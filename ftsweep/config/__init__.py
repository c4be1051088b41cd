"""Configuration: the typed schema (`schema`) and Hydra composition (`compose`, `sources`, `inputs`): the shipped
configs, extended and overridden by `conf/` and `sweeps/` in the working directory."""

from ftsweep.config.compose import compose, compose_group
from ftsweep.config.inputs import check_inputs
from ftsweep.config.schema import (
    ArchitectureConfig,
    AshaConfig,
    Config,
    ConfigError,
    DataConfig,
    HardwareConfig,
    MethodConfig,
    ModelConfig,
    SearchSubspace,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
    validate,
)
from ftsweep.config.sources import CONF_DIR, PROJECT_ROOT, SWEEPS_DIR, group_options

__all__ = [
    "CONF_DIR",
    "PROJECT_ROOT",
    "SWEEPS_DIR",
    "ArchitectureConfig",
    "AshaConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "HardwareConfig",
    "MethodConfig",
    "ModelConfig",
    "SearchSubspace",
    "SweepConfig",
    "TrackingConfig",
    "TrainConfig",
    "check_inputs",
    "compose",
    "compose_group",
    "group_options",
    "validate",
]
