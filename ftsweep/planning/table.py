"""The plan's output: plan.json (every option) and the table `ftsweep plan` prints (a pick per
method and device)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ftsweep.methods import method_names
from ftsweep.planning.cost import device_kinds
from ftsweep.planning.option import PlanOption, cost_key

HEADER = "method layout device n precision GB/device of_GB fits hours $/run runs/$".split()


def write_plan_json(options: list[PlanOption], path: str | Path) -> Path:
    """plan.json: one object per option, with its layout spelled out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(o), "layout": o.layout} for o in options]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


def format_plan_table(options: list[PlanOption]) -> str:
    """Per method and device type, the cheapest layout that fits (else the smallest); * marks the
    cheapest of each method. plan.json holds every option."""
    if not options:
        return "no options to plan"
    first = options[0]
    header = [h.replace("_", " ") for h in HEADER] + [""]
    rows = [[*_cells(o), "*" if o.cheapest else ""] for o in _picks(options)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"{first.model}: memory at batch {first.batch_size} x {first.seq_len} tokens "
        f"(train.batch_size, train.seq_len); hours for {first.workload_tokens / 1e6:.2f}M "
        "training tokens",
        *(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]
        ),
        "* the cheapest that fits, per method; each device shows its cheapest layout that fits, "
        f"else its smallest. All {len(options)} options are in plan.json.",
    ]
    unsharded = _one_device_unsharded(options)
    if unsharded:
        lines.append(f"One GPU, no sharding or offload: {unsharded}")
    eight_bit = eight_bit_line(options)
    if eight_bit:
        lines.append(eight_bit)
    notes = sorted({f"{o.method}: {o.calibrated}" for o in options if o.calibrated})
    lines += [f"calibrated: {n}" for n in notes] or [
        "not calibrated: no measured runs at these settings"
    ]
    return "\n".join(lines)


def _picks(options: list[PlanOption]) -> list[PlanOption]:
    """Per method (in the registry's order), optimizer (full fine-tuning's AdamW, then 8-bit
    AdamW) and device: the cheapest that fits, else the smallest."""
    picks = []
    for method in method_names():
        optimizers = dict.fromkeys(o.optimizer for o in options if o.method == method)
        for optimizer in optimizers:
            for gpu in dict.fromkeys(o.gpu for o in options):
                group = [
                    o
                    for o in options
                    if o.method == method and o.optimizer == optimizer and o.gpu == gpu
                ]
                if group:
                    fitting = [o for o in group if o.fits]
                    best = min(fitting, key=cost_key) if fitting else min(group, key=_memory_key)
                    picks.append(best)
    return picks


def _cells(o: PlanOption) -> list[str]:
    epd = o.experiments_per_dollar
    return [
        o.method,
        o.layout,
        o.gpu,
        str(o.num_gpus),
        o.precision,
        f"{o.est_peak_gb_per_gpu:.1f}",
        f"{o.memory_gb:g}",
        "yes" if o.fits else "no",
        _short(o.est_hours),
        _short(o.est_cost_usd),
        _short(epd) if epd is not None else "-",
    ]


def _one_device_unsharded(options: list[PlanOption]) -> str:
    """Each method's need on one GPU without ZeRO sharding or offload: the guide's comparison
    (full fine-tuning with each optimizer the plan tried)."""
    needs = _unsharded_needs(options)
    return ", ".join(
        f"{_method_text(o)} {o.est_peak_gb_per_gpu:.1f} GB ({o.precision})" for o in needs.values()
    )


def _unsharded_needs(options: list[PlanOption]) -> dict[tuple, PlanOption]:
    """(method, optimizer) -> its option on one GPU, unsharded, not offloaded (bf16 first)."""
    kinds = device_kinds()
    needs: dict[tuple, PlanOption] = {}
    # bf16 devices first: the guide's GPUs
    for o in sorted(options, key=lambda o: o.precision != "bf16"):
        if (
            kinds.get(o.gpu) == "cuda"
            and o.num_gpus == 1
            and not o.offload
            and o.zero_stage in (None, 0)
        ):
            needs.setdefault((o.method, o.optimizer), o)
    return needs


def _method_text(o: PlanOption) -> str:
    # the method, and its optimizer where it is not AdamW
    return (
        o.method if o.optimizer in (None, "adamw") else f"{o.method} ({o.layout.split(', ')[-1]})"
    )


def eight_bit_line(options: list[PlanOption]) -> str | None:
    """Full fine-tuning with 8-bit optimizer states on one GPU of the most memory, unsharded:
    whether it fits, with the plan's breakdown as the reason; None when the plan tried none."""
    from ftsweep.planning.memory import Memory

    kinds = device_kinds()
    unsharded = [
        o
        for o in options
        if o.optimizer not in (None, "adamw")
        and kinds.get(o.gpu) == "cuda"
        and o.num_gpus == 1
        and not o.offload
        and o.zero_stage == 0
    ]
    if not unsharded:
        return None
    # the most memory; among equals, bf16 and then the cheaper
    o = max(unsharded, key=lambda o: (o.memory_gb, o.precision == "bf16", -o.est_cost_usd))
    parts = Memory(**o.breakdown_gb, grads_persist=o.grads_persist).describe()
    return (
        f"Full fine-tuning with {o.layout.split(', ')[-1]} on one {o.memory_gb:g} GB GPU "
        f"({o.gpu}, {o.precision}), no sharding: {o.est_peak_gb_per_gpu:.1f} GB = {parts}: "
        + ("fits" if o.fits else f"does not fit in {o.memory_gb:g} GB")
    )


def _memory_key(o: PlanOption) -> tuple:
    return (o.est_peak_gb_per_gpu, o.est_cost_usd)


def _short(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01:
        return f"{x:.2f}"
    return f"{x:.2g}"
