"""A sweep's LoRA-type adapters, listed from MLflow with size and quality, and which one the
report recommends (what `ftsweep merge` merges when no run is named).

Every LoRA-type trial logs its adapter (peft format) under the MLflow artifact path `adapter`.
The default follows the report: its recommendation when that is an adapter, else the same
rule among the adapter runs alone; none when nothing beats the base model beyond noise, or
when the runs are on several inputs (`NoDefaultRun`: merge then asks for run=ID).
"""

from __future__ import annotations

import math

from ftsweep.config import ConfigError
from ftsweep.report.analysis import load_target
from ftsweep.report.costs import DEFAULT_TARGET_GPU
from ftsweep.report.evidence import Evidence
from ftsweep.report.inputs import split_by_inputs
from ftsweep.report.recommendation import recommend
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.tracking.store import get_client
from ftsweep.trial.baseline import BASELINE_METHOD

ADAPTER_PATH = "adapter"
TABLE_HEADERS = [
    "",
    "run id",
    "run",
    "method",
    "r",
    "alpha",
    "targets",
    "lr",
    "seed",
    "quality",
    "size",
    "status",
]


def adapter_files(client, run_id: str, path: str = ADAPTER_PATH) -> list:
    """Every file the run logged under its adapter path (none when it saved no adapter)."""
    files = []
    for item in client.list_artifacts(run_id, path):
        files.extend(adapter_files(client, run_id, item.path) if item.is_dir else [item])
    return files


class NoDefaultRun(ConfigError):
    """The sweep has finished adapter runs but none to merge by default: name one with run=ID."""


def _adapter_ids(rows: list[RunRow]) -> str:
    return ", ".join(r.run_id[:12] for r in rows if r.is_adapter) or "none"


def recommended_adapter_run(
    rows: list[RunRow], target_gpu: str | None = DEFAULT_TARGET_GPU
) -> RunRow | None:
    """The report's recommended run when it has an adapter, else the one the same rule picks
    among adapter runs (with the base model's run, so it must still beat it). None when no
    adapter run finished; NoDefaultRun (one line) when some did but none is recommended."""
    finished = [r for r in rows if r.is_adapter and r.usable]
    if not finished:
        return None
    groups = split_by_inputs(rows)
    if len(groups) > 1:
        raise NoDefaultRun(
            f"no default run to merge: the sweep's runs are on {len(groups)} different inputs, "
            f"never compared; name one with run=ID (adapter runs: {_adapter_ids(rows)})"
        )
    target = load_target(target_gpu)
    evidence = Evidence()
    overall = recommend(rows, target=target, evidence=evidence)
    if overall and overall.run and overall.run.is_adapter:
        return overall.run
    base = [r for r in rows if r.method == BASELINE_METHOD]
    among_adapters = recommend(
        [r for r in rows if r.is_adapter] + base, target=target, evidence=evidence
    )
    if among_adapters and among_adapters.run:
        return among_adapters.run
    why = among_adapters.why_none if among_adapters else "no adapter run is recommended"
    raise NoDefaultRun(
        f"no default run to merge: {why}; name one with run=ID (adapter runs: {_adapter_ids(rows)})"
    )


def list_adapters(tracking_uri: str, experiment: str) -> list[dict]:
    """Every LoRA-type run of the sweep that logged an adapter, best quality first."""
    rows = load_rows(tracking_uri, experiment)
    try:
        chosen = recommended_adapter_run(rows)
    except NoDefaultRun:
        chosen = None  # the table marks no default; merge says why
    recommended_id = chosen.run_id if chosen else None
    client = get_client(tracking_uri)
    adapters = []
    for row in (r for r in rows if r.is_adapter):
        files = adapter_files(client, row.run_id)
        if not files:
            continue  # failed before it saved one
        adapters.append(
            {
                "run_id": row.run_id,
                "run": row.name,
                "method": row.method,
                "lora_r": row.lora_r,
                "lora_alpha": row.params.get("lora_alpha"),
                "target_modules": row.targets,
                "learning_rate": row.learning_rate,
                "seed": row.seed,
                "quality": row.quality,
                "quality_ci": row.logged_interval(),
                "test_quality": row.test_quality,
                "size_mb": sum(f.file_size or 0 for f in files) / 1e6,
                "files": len(files),
                "status": row.left_out_reason or "finished",
                "recommended": row.run_id == recommended_id,
            }
        )
    return sorted(adapters, key=lambda a: (-_sortable(a["quality"]), a["size_mb"]))


def _quality_cell(a: dict) -> str:
    if not math.isfinite(a["quality"]):
        return "n/a"
    low, high = a.get("quality_ci") or (math.nan, math.nan)
    if math.isfinite(low) and math.isfinite(high):
        return f"{a['quality']:.3f} [{low:.3f}, {high:.3f}]"
    return f"{a['quality']:.3f}"


def _sortable(quality: float) -> float:
    return quality if math.isfinite(quality) else -math.inf


def _table_cells(a: dict) -> list[str]:
    return [
        "*" if a["recommended"] else "",
        a["run_id"][:12],
        a["run"],
        a["method"],
        str(a["lora_r"]),
        f"{float(a['lora_alpha']):g}" if a["lora_alpha"] is not None else "?",
        str(a["target_modules"]),
        f"{a['learning_rate']:.0e}" if a["learning_rate"] is not None else "?",
        str(a["seed"]),
        _quality_cell(a),
        f"{a['size_mb']:.2f} MB",
        a["status"],
    ]


def format_adapters_table(rows: list[dict]) -> str:
    """A plain-text table of `list_adapters` rows; `*` marks the default for merging."""
    if not rows:
        return "no adapters: this sweep has no LoRA or QLoRA run that logged one"
    lines = [_table_cells(a) for a in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(TABLE_HEADERS)]
    text = [
        " ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [TABLE_HEADERS, *lines]
    ]
    text.insert(1, " ".join("-" * w for w in widths))
    if any(a["recommended"] for a in rows):
        text.append("* recommended: what `ftsweep merge` merges when no run= is given")
    else:
        text.append("no adapter is recommended (see the report): `ftsweep merge` needs run=ID")
    return "\n".join(text)
