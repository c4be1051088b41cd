"""The claims on cost and size: experiments per dollar and adapter storage."""

from __future__ import annotations

import math
import statistics

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.claims.verdicts import (
    NOT_TESTABLE,
    Claim,
    range_verdict,
)
from ftsweep.report.costs import MethodCost
from ftsweep.report.guide import (
    GUIDE_EPD_GAIN,
    GUIDE_STORAGE_RATIO,
)
from ftsweep.report.methods import adapter_method, full_method, is_adapter
from ftsweep.report.render import (
    Table,
    fmt_mb,
    fmt_ratio,
    fmt_usd,
)


def _cost_basis(a: Analysis) -> tuple[list[MethodCost], str]:
    if a.projected:
        return a.projected, f"projected to {a.target.name}"
    return a.costs, "as measured"


def claim_epd(a: Analysis) -> Claim:
    text = "LoRA gives 5-20x more experiments per dollar"
    costs, basis = _cost_basis(a)
    by = {c.method: c for c in costs}
    full_name = full_method(by)
    lora_name = adapter_method(by, quantized=False) or adapter_method(by)
    if full_name is None or lora_name is None:
        return Claim(text, NOT_TESTABLE, "needs full fine-tuning and LoRA-type runs")
    noise = a.recommendation.noise if a.recommendation else None
    share = noise.share if noise else 0.10
    rows, ranges = [], {}
    for c in costs:
        gain = by[full_name].cost_usd / c.cost_usd if c.cost_usd > 0 else math.inf
        low, high = gain * (1 - share) / (1 + share), gain * (1 + share) / (1 - share)
        ranges[c.method] = (gain, low, high)
        rows.append(
            [
                method_label(c.method),
                str(c.runs),
                fmt_usd(c.cost_usd),
                f"{fmt_ratio(gain)} ({fmt_ratio(low)} to {fmt_ratio(high)})",
            ]
        )
    table = Table(
        ["method", "runs", f"cost per run ({basis})", "experiments per dollar against full"], rows
    )
    gain, low, high = ranges[lora_name]
    noise_text = noise.text() if noise else "10%, assumed"
    measured = (
        f"{method_label(lora_name)}: {fmt_ratio(gain)} {basis}, {fmt_ratio(low)} to {fmt_ratio(high)} "
        f"allowing for a wall-time spread of {noise_text}"
    )
    verdict = range_verdict(low, high, *GUIDE_EPD_GAIN)
    if verdict == NOT_TESTABLE:
        return Claim(text, verdict, f"{measured}: the range reaches across an end of 5-20x", table)
    return Claim(text, verdict, measured, table)


def claim_storage(a: Analysis) -> Claim:
    text = "An adapter is 50-200 MB against 14 GB (70-280x smaller)"
    storage = {c.method: c.storage_mb for c in a.costs}
    adapters = [mb for m, mb in storage.items() if is_adapter(m) and math.isfinite(mb)]
    full = full_method(storage)
    if full is None or not adapters or not math.isfinite(storage[full]):
        return Claim(
            text,
            NOT_TESTABLE,
            "needs full fine-tuning and LoRA-type runs with their artifact sizes",
        )
    adapter = statistics.fmean(adapters)
    ratio = storage[full] / adapter if adapter > 0 else math.inf
    table = Table(
        ["method", "artifact per run"], [[method_label(m), fmt_mb(mb)] for m, mb in storage.items()]
    )
    measured = f"adapter {fmt_mb(adapter)} against full {fmt_mb(storage[full])}: {fmt_ratio(ratio)} smaller (sizes are exact: no interval)"
    # The ratio grows with model size and shrinks with rank.
    return Claim(text, range_verdict(ratio, ratio, *GUIDE_STORAGE_RATIO), measured, table)
