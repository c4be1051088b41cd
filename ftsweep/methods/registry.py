"""The method registry: every method registers once, and the rest of ftsweep asks here.

In the spirit of peft's `register_peft_method`: a new method is one module in this package
that defines its knobs and a `Method`, calls `register_method`, and is listed in `BUILTIN`,
plus one `conf/method/NAME.yaml` with its defaults.
"""

from __future__ import annotations

import importlib

from ftsweep.methods.base import Method

# Modules that register the built-in methods, in the order reports list them.
BUILTIN = ("ftsweep.methods.full", "ftsweep.methods.lora", "ftsweep.methods.qlora")

_REGISTRY: dict[str, Method] = {}
_loaded = False


def register_method(method: Method) -> Method:
    if method.name in _REGISTRY and type(_REGISTRY[method.name]) is not type(method):
        raise ValueError(f"method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    method.knobs.registered = method
    return method


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)


def all_methods() -> list[Method]:
    _load_builtin()
    return list(_REGISTRY.values())


def method_names() -> tuple[str, ...]:
    return tuple(m.name for m in all_methods())


def get_method(name: str) -> Method:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"method={name}: no such method (allowed: {', '.join(_REGISTRY)})") from None


def find_method(name: str) -> Method | None:
    """The registered method of this name, or None (e.g. a stored run's `method=none`)."""
    _load_builtin()
    return _REGISTRY.get(name)


def method_label(name: str) -> str:
    """How a report names a method; `none` is the untrained base model's run."""
    method = find_method(name)
    if method is not None:
        return method.label
    return "Base model" if name == "none" else name


def method_rank(name: str) -> int:
    """Position in the registry (reports list methods in this order); unknown names last."""
    names = method_names()
    return names.index(name) if name in names else len(names)
