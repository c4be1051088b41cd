"""The report's run lists: every run it used, and every run it left out with why."""

from __future__ import annotations

import math

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.render import (
    Section,
    Table,
    fmt_estimate,
    fmt_mb,
    fmt_quality,
    fmt_seconds,
    fmt_usd,
)
from ftsweep.report.runs import RunRow
from ftsweep.report.sections_common import plural

USED_HEADERS = [
    "run",
    "id",
    "method",
    "configuration",
    "seed",
    "quality [95% interval]",
    "test quality [95% interval]",
    "exact match",
    "eval loss",
    "forgetting [95% interval]",
    "wall time",
    "cost",
    "storage",
    "peak GB",
]


def _quality(row: RunRow, prefix: str) -> str:
    """The run's logged quality with its logged interval (the report's comparisons use the
    per-example scores where the run has them)."""
    value = row.metrics.get(f"{prefix}quality", math.nan)
    interval = row.logged_interval(prefix) or (math.nan, math.nan)
    return fmt_estimate(value, *interval)


def _exact_match(row: RunRow) -> str:
    """The strict view beside quality (the whole reply right), where the run recorded it."""
    value = row.metrics.get("exact_match", math.nan)
    return fmt_quality(value) if math.isfinite(value) else "n/a"


def _forgetting(row: RunRow) -> str:
    m = row.metrics
    value = m.get("forgetting", math.nan)
    low, high = m.get("forgetting_ci_low", math.nan), m.get("forgetting_ci_high", math.nan)
    if not math.isfinite(low):
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def all_runs(a: Analysis) -> Section:
    rows = [
        [
            r.name,
            r.run_id[:8],
            method_label(r.method),
            r.knobs,
            r.seed,
            _quality(r, ""),
            _quality(r, "test_"),
            _exact_match(r),
            fmt_quality(r.metrics.get("eval_loss", math.nan)),
            _forgetting(r),
            fmt_seconds(r.wall_time_s),
            fmt_usd(r.cost_usd),
            fmt_mb(r.metrics.get("artifact_mb", math.nan)),
            f"{r.metrics.get('peak_mem_gb', math.nan):.2f}",
        ]
        for r in sorted(a.usable, key=lambda r: -r.quality)
    ]
    if not rows:
        return Section("All runs used", ["None."])
    return Section(
        "All runs used",
        [
            "Each run's quality with the 95% interval it logged over its examples (none for runs "
            "recorded before intervals were); the test split was never used to choose. Exact "
            "match is the strict view of the same replies (the whole reply right); forgetting is "
            "in nats per token of general text, with its paired interval over text windows.",
            Table(USED_HEADERS, rows),
        ],
    )


def left_out(a: Analysis) -> Section:
    if not a.left_out:
        return Section("Runs left out", ["None: every run finished and was used."])
    rows = [
        [
            r.name,
            r.run_id[:8],
            method_label(r.method),
            r.knobs,
            r.seed,
            r.left_out_reason or "",
            r.error.splitlines()[0][:160] if r.error else "",
        ]
        for r in a.left_out
    ]
    return Section(
        "Runs left out",
        [
            f"{plural(len(a.left_out), 'run')} failed, stopped early or did not finish: counted here, not used above.",
            Table(["run", "id", "method", "configuration", "seed", "why", "error"], rows),
        ],
    )
