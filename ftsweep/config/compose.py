"""How a config is composed: Hydra over the shipped configs and the user's own, then the schema.

Where configs come from is `ftsweep.config.sources`. A bad override or a missing option becomes one
`ConfigError` line naming the key and what is allowed; Hydra's own multi-line errors never reach
the user. After the schema, credentials in `tracking.uri` move to the environment (`move_credentials`)
and `check_inputs` checks what the schema cannot: that the tracking URI is one MLflow can use
here, that the results folder is the user's own, and that the user's data files can be read.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path

from pydantic import BaseModel

from ftsweep.config.inputs import check_inputs, move_credentials
from ftsweep.config.schema import Config, ConfigError, validate
from ftsweep.config.sources import group_options, hydra_search_path, link_file, option_file


def compose(overrides: list[str] | None = None, check_data: bool = True) -> Config:
    """Compose the configs with Hydra overrides (`method=lora method.lora_r=8 sweep=smoke`),
    validate them and check the inputs they name (`check_inputs`; `check_data=False` skips
    reading data.path, for commands that only read records)."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    overrides = [_as_schema_override(o) for o in overrides or []]
    links: dict[str, Path] = {}
    try:
        with hydra_search_path(overrides) as (composed, links):
            cfg = hydra_compose(config_name="config", overrides=composed)
        raw = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, YAMLError) as exc:
        raise ConfigError(_hydra_message(exc, links)) from None
    raw.pop("hydra", None)
    # Credentials leave the config before anything can store it (ftsweep.config.inputs).
    cfg = move_credentials(validate(raw))
    check_inputs(cfg, data=check_data)
    return cfg


def compose_group(group: str, name: str) -> dict:
    """One option of a config group as Hydra composes it (`compose_group("method", "lora")`),
    as plain data, read where `compose` reads it (the user's file shadows a shipped one); a
    name that is not an option is a ConfigError naming those that are."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    path = option_file(group, name)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _GROUP_CACHE:
        links: dict[str, Path] = {}
        try:
            with tempfile.TemporaryDirectory(prefix="ftsweep-conf-") as tmp:
                link_file(path, Path(tmp) / "option.yaml")
                links[str(Path(tmp) / "option.yaml")] = path
                with initialize_config_dir(config_dir=tmp, version_base="1.3"):
                    node = hydra_compose(config_name="option")
            _GROUP_CACHE[key] = OmegaConf.to_container(node, resolve=True)
        except (HydraException, OmegaConfBaseException, YAMLError) as exc:
            raise ConfigError(_hydra_message(exc, links)) from None
    return copy.deepcopy(_GROUP_CACHE[key])


# compose_group's answers by the file they were read from (and its mtime and size): Hydra
# takes ~0.1 s per composition, and expanding a sweep asks for each method's defaults often.
_GROUP_CACHE: dict[tuple, dict] = {}


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


def _hydra_message(exc: Exception, links: dict[str, Path] | None = None) -> str:
    """One line from Hydra's multi-line errors, with what is allowed; files are named where
    they are, not by the overlay's links to them."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:  # YAML that does not parse
        name = str((links or {}).get(mark.name, mark.name))
        return f"{name}:{mark.line + 1}: not valid YAML ({exc.problem} at column {mark.column + 1})"
    text = str(exc).strip()
    for link, target in sorted((links or {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace(link, str(target))
    first = text.splitlines()[0] if text else type(exc).__name__
    missing_choice = re.search(r"Could not (?:find|load) '([\w-]+)/([^']+)'", text)
    if missing_choice:
        group, name = missing_choice.groups()
        return f"{group}={name}: no such {group} (allowed: {', '.join(group_options(group))})"
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
