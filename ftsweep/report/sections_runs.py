"""The report's run lists: every run it used, and every run it left out with why."""

from __future__ import annotations

import math

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis
from ftsweep.report.render import Section, Table, fmt_mb, fmt_quality, fmt_seconds, fmt_usd
from ftsweep.report.sections_common import plural

USED_HEADERS = [
    "run",
    "id",
    "method",
    "configuration",
    "seed",
    "quality",
    "eval loss",
    "forgetting",
    "wall time",
    "cost",
    "storage",
    "peak GB",
]


def all_runs(a: Analysis) -> Section:
    rows = [
        [
            r.name,
            r.run_id[:8],
            method_label(r.method),
            r.knobs,
            r.seed,
            fmt_quality(r.quality),
            fmt_quality(r.metrics.get("eval_loss", math.nan)),
            f"{r.metrics.get('forgetting', math.nan):+.3f}",
            fmt_seconds(r.wall_time_s),
            fmt_usd(r.cost_usd),
            fmt_mb(r.metrics.get("artifact_mb", math.nan)),
            f"{r.metrics.get('peak_mem_gb', math.nan):.2f}",
        ]
        for r in sorted(a.usable, key=lambda r: -r.quality)
    ]
    return Section("All runs used", [Table(USED_HEADERS, rows)] if rows else ["None."])


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
