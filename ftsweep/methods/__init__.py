"""Fine-tuning methods: a registry and one module per method (`full`, `lora`, `qlora`).

Each method module owns its knobs (a pydantic model the schema validates), how its base loads,
what trains, what it records, and its memory and FLOP terms for the plan. Everything else asks
the registry (`get_method(name)`, `cfg.method.is_adapter`, `cfg.method.quantized`).
"""

from ftsweep.methods.base import Method, MethodKnobs
from ftsweep.methods.registry import (
    all_methods,
    find_method,
    get_method,
    method_label,
    method_names,
    method_rank,
    register_method,
)

__all__ = [
    "Method",
    "MethodKnobs",
    "all_methods",
    "find_method",
    "get_method",
    "method_label",
    "method_names",
    "method_rank",
    "register_method",
]
