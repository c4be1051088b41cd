"""Configuration: the typed schema (`schema`) and Hydra composition (`compose`)."""

from ftsweep.config.compose import CONF_DIR, PROJECT_ROOT, SWEEPS_DIR, compose
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
    "compose",
    "validate",
]
