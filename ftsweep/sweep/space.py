"""A sweep's search space -> the trial configs it asks for.

`grid` expands the space here into a fixed list; `random` and `optuna` draw from it through a
define-by-run function, so each method's knobs are drawn only when that method is drawn.

Each entry of `sweep.space` is one method's sub-space, so knobs exist only where they mean
something (rank and alpha for LoRA-type methods, ZeRO stage for full fine-tuning). In `params`,
a list is a grid axis and a scalar is fixed; an explicit module list is one value, so it is
written inside an axis: `target_modules: [[q_proj, v_proj]]`. `lora_alpha_ratio: k` ties alpha
to rank (alpha = k x r) so "alpha = 2 x rank" can be put to the test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ftsweep.config import Config, ConfigError, SearchSubspace, validate
from ftsweep.config.compose import compose_group
from ftsweep.methods import get_method

PSEUDO_PARAMS = ("lora_alpha_ratio",)


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    run_name: str
    config: Config


def method_defaults(name: str) -> dict[str, Any]:
    """conf/method/NAME.yaml as Hydra composes it."""
    return compose_group("method", name)


def _axes(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid of one sub-space: every combination of its list-valued params."""
    keys = list(params)
    values = [v if isinstance(v, list) else [v] for v in params.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def method_overrides(cfg: Config) -> dict[str, Any]:
    """The method knobs given on the command line (`method.warmup_ratio=0.1`): those of the
    composed method that differ from its conf/method defaults."""
    defaults = method_defaults(cfg.method.name)
    chosen = cfg.method.model_dump()
    return {k: chosen[k] for k in defaults if k != "name" and chosen.get(k) != defaults[k]}


def _method_config(
    sub: SearchSubspace, point: dict[str, Any], where: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """A trial's method: the method's defaults, then the command line's method knobs (those the
    method has), then the space's point, which wins."""
    allowed = set(get_method(sub.method).knobs.model_fields) | set(PSEUDO_PARAMS)
    for key in point:
        if key not in allowed:
            raise ConfigError(
                f"{where}.params.{key}: unknown knob for method {sub.method} "
                f"(allowed: {', '.join(sorted(allowed - {'name'}))})"
            )
    defaults = method_defaults(sub.method)
    method = (
        defaults
        | {k: v for k, v in overrides.items() if k in defaults}
        | {k: v for k, v in point.items() if k not in PSEUDO_PARAMS}
    )
    ratio = point.get("lora_alpha_ratio")
    if ratio is not None:
        if "lora_r" not in method:
            raise ConfigError(
                f"{where}.params.lora_alpha_ratio: ties lora_alpha to lora_r, which method "
                f"{sub.method} does not have"
            )
        method["lora_alpha"] = ratio * method["lora_r"]
    return method


def expand(cfg: Config) -> list[TrialSpec]:
    """Every trial the sweep asks for, validated, in a stable order; duplicates dropped."""
    from ftsweep.trial.identity import run_name_for, trial_id_for

    if not cfg.sweep.space:
        raise ConfigError("sweep.space is empty: choose a sweep with sweep=NAME (see sweeps/)")
    base = cfg.model_dump()
    overrides = method_overrides(cfg)
    specs: dict[str, TrialSpec] = {}
    for index, sub in enumerate(cfg.sweep.space):
        where = f"sweep.space[{index}]"
        for point in _axes(sub.params):
            method = _method_config(sub, point, where, overrides)
            for seed_offset in range(cfg.sweep.seeds):
                train = base["train"] | {"seed": cfg.train.seed + seed_offset}
                try:
                    trial_cfg = validate(base | {"method": method, "train": train})
                except ConfigError as exc:
                    raise ConfigError(f"{where} ({sub.method}, {point}): {exc}") from None
                trial_id = trial_id_for(trial_cfg)
                specs.setdefault(trial_id, TrialSpec(trial_id, run_name_for(trial_cfg), trial_cfg))
    return list(specs.values())


SEP = "__"  # sampled names are METHOD__KNOB: Optuna needs one distribution per name


def _categorical_choices(values: list) -> list:
    # Optuna's categoricals hold scalars: an explicit module list travels as "q_proj,v_proj".
    return [",".join(v) if isinstance(v, list) else v for v in values]


class DefineByRun:
    """An Optuna define-by-run space over the conditional space; returns the fixed knobs.

    A class rather than a closure: Ray pickles the searcher with the sweep's state.
    """

    def __init__(self, space: list[SearchSubspace]):
        self.by_method = {sub.method: sub for sub in space}

    def __call__(self, trial) -> dict[str, Any]:
        method = trial.suggest_categorical("method", list(self.by_method))
        fixed: dict[str, Any] = {}
        for key, value in self.by_method[method].params.items():
            name = f"{method}{SEP}{key}"
            if isinstance(value, list):
                trial.suggest_categorical(name, _categorical_choices(value))
            elif isinstance(value, dict):
                low, high, log = value["low"], value["high"], bool(value.get("log", False))
                if isinstance(low, int) and isinstance(high, int):
                    trial.suggest_int(name, low, high, log=log)
                else:
                    trial.suggest_float(name, float(low), float(high), log=log)
            else:
                fixed[name] = value
        return fixed


def define_by_run(space: list[SearchSubspace]) -> DefineByRun:
    return DefineByRun(space)


def check_ranges(space: list[SearchSubspace]) -> None:
    for index, sub in enumerate(space):
        for key, value in sub.params.items():
            if isinstance(value, dict):
                missing = {"low", "high"} - set(value)
                extra = set(value) - {"low", "high", "log"}
                if missing or extra:
                    raise ConfigError(
                        f"sweep.space[{index}].params.{key}={value}: a range is {{low, high, log}}"
                    )
                if not value["low"] < value["high"]:
                    raise ConfigError(f"sweep.space[{index}].params.{key}: low must be below high")


def spec_from_sample(cfg: Config, sample: dict[str, Any]) -> TrialSpec:
    """The trial a searcher drew: {"method": m, "m__knob": value, ...} -> a validated spec."""
    from ftsweep.trial.identity import run_name_for, trial_id_for

    method_name = sample["method"]
    point: dict[str, Any] = {}
    for name, value in sample.items():
        if name.startswith(method_name + SEP):
            key = name.split(SEP, 1)[1]
            if key == "target_modules" and isinstance(value, str) and "," in value:
                value = value.split(",")
            point[key] = value
    sub = SearchSubspace(method=method_name, params={})
    method = _method_config(sub, point, "sweep.space", method_overrides(cfg))
    trial_cfg = validate(cfg.model_dump() | {"method": method})
    return TrialSpec(trial_id_for(trial_cfg), run_name_for(trial_cfg), trial_cfg)
