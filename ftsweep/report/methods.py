"""What the report asks the method registry about a recorded run's `method` param.

The report never compares method names itself: full fine-tuning is the registered method that
trains no adapter (`is_adapter` False), LoRA-type methods train adapters, and methods are listed
in the registry's order. A name the registry does not know (the base model's `none`, a run from
another tool) is neither, and is listed last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from ftsweep.methods import find_method, method_rank


class HasMethod(Protocol):
    @property
    def method(self) -> str: ...


Row = TypeVar("Row", bound=HasMethod)


def is_full(method: str) -> bool:
    """Full fine-tuning: a registered method whose every weight trains (no adapter)."""
    spec = find_method(method)
    return spec is not None and not spec.is_adapter


def is_adapter(method: str) -> bool:
    """A LoRA-type method: adapters train on a frozen base."""
    spec = find_method(method)
    return spec is not None and spec.is_adapter


def report_order(method: str) -> tuple[int, str]:
    """Sort key: the registry's order; names it does not know after, alphabetically."""
    return method_rank(method), method


def full_method(methods: Iterable[str]) -> str | None:
    """The full fine-tuning method among these names, if any."""
    return min((m for m in methods if is_full(m)), key=report_order, default=None)


def adapter_method(methods: Iterable[str], quantized: bool | None = None) -> str | None:
    """The adapter method a claim about "LoRA" is read from: among these names, one on an
    unquantised base (LoRA) before one on a quantised base (QLoRA). `quantized=False` allows
    only the unquantised ones."""
    adapters = [m for m in methods if is_adapter(m)]
    if quantized is not None:
        adapters = [m for m in adapters if find_method(m).quantized == quantized]
    return min(adapters, key=lambda m: (find_method(m).quantized, report_order(m)), default=None)


def by_method(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Runs (or anything with a `method`) grouped by method, in report order."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row.method, []).append(row)
    return {m: out[m] for m in sorted(out, key=report_order)}
