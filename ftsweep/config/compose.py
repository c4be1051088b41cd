"""How a config is composed: Hydra over the shipped `conf/` and `sweeps/`, then the schema.

A bad override or a missing option becomes one `ConfigError` line naming the key and what is
allowed; Hydra's own multi-line errors never reach the user.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from ftsweep.config.schema import Config, ConfigError, validate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
SWEEPS_DIR = PROJECT_ROOT / "sweeps"


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


def group_options(group: str) -> list[str]:
    """The options of a config group (`hardware` -> ["a100-80gb", "cpu", ...])."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def compose_group(group: str, name: str) -> dict:
    """One option of a config group as Hydra composes it (`compose_group("method", "lora")`),
    as plain data; a name that is not an option is a ConfigError naming those that are."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    if name not in group_options(group):
        raise ConfigError(
            f"{group}={name}: no such {group} (allowed: {', '.join(group_options(group))})"
        )
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR / group), version_base="1.3"):
            node = hydra_compose(config_name=name)
    except HydraException as exc:
        raise ConfigError(_hydra_message(exc)) from None
    return OmegaConf.to_container(node, resolve=True)


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
    if dotted == "method":
        # The method's knobs depend on which method is chosen: every registered method's.
        from ftsweep.methods import all_methods

        return sorted({key for m in all_methods() for key in m.knobs.model_fields})
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
