"""The designed search stage as a sweep file, `RESULTS/auto/sweep.yaml`: read it, edit it, and
run it as any sweep (`ftsweep sweep sweep=RESULTS/auto/sweep.yaml`).

The file carries every input its trials depend on (model, data, hardware, train settings, the
results folder), so running it alone gives the same trials, with the same ids, as `ftsweep auto`
ran: a trial already recorded is not trained again. The same inputs always write the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ftsweep.auto.design import Design
from ftsweep.config import Config

SWEEP_NAME = "auto"  # the sweep (and MLflow experiment) every stage records into
FOLDER = "auto"  # RESULTS/auto: the file, the report, the merged model


def auto_dir(cfg: Config) -> Path:
    return cfg.results_path / FOLDER


def sweep_path(cfg: Config) -> Path:
    return auto_dir(cfg) / "sweep.yaml"


def _comment(text: str) -> str:
    return "\n".join(f"# {line}".rstrip() for line in text.splitlines())


def _header(d: Design) -> str:
    b, p = d.base, d.profile
    lines = [
        "@package _global_",
        f"Designed by `ftsweep auto` for model={b.model.name} data={b.data.name} "
        f"hardware={b.hardware.name}, budget {d.budget.text()}.",
        "The search stage: ASHA on training tokens over the blocks below, each with its own",
        f"learning-rate ladder; it may spend {d.search_share:.0%} of the budget, and the confirm "
        "stage (more seeds",
        "for the best configurations, `ftsweep auto`) the rest. Rerun it alone with",
        f"  ftsweep sweep sweep={sweep_path(b)}",
        "",
        *p.lines(b),
        "",
        f"ASHA: one rung at step {d.rung_step} of {b.train.max_steps} "
        f"(its evaluation; grace period {d.grace_period_tokens} tokens, half of those expected "
        f"by then), keeping 1 in {d.reduction_factor:g};",
        f"every trial warms its rate up over the first {d.warmup_ratio:.0%} of its steps.",
        f"Planned: {d.trials} trials, ~${d.search_cost[0]:.4f} / ~{d.search_cost[1]:.0f} s with "
        f"the base model's run (rough: {b.hardware.name}'s plan plus generation).",
        "",
        "Blocks (each a learning-rate ladder; the space below lists one entry per trial, a rung of",
        "every ladder at a time, so a budget that runs short still measures every block):",
        *[
            f"  {blk.label} at {', '.join(f'{r:.0e}' for r in blk.rates)}: {blk.role}"
            for blk in d.blocks
        ],
    ]
    if d.dropped:
        lines += ["", "Left out:", *[f"  {x.what}: {x.reason}" for x in d.dropped]]
    if d.notes:
        lines += ["", "Notes:", *[f"  {n}" for n in d.notes]]
    return _comment("\n".join(lines))


def _sweep_section(d: Design) -> dict:
    search = d.search_budget
    section: dict = {
        "name": SWEEP_NAME,
        "description": (
            f"ftsweep auto's search stage for {d.base.model.name} on {d.base.data.name} "
            f"({d.base.hardware.name}): {d.trials} trials in {len(d.blocks)} blocks under ASHA"
        ),
        "algorithm": "grid",
        "scheduler": "asha",
        "asha": {
            "grace_period_tokens": d.grace_period_tokens,
            "reduction_factor": d.reduction_factor,
        },
        "max_concurrent_trials": 1,  # one trial at a time: the gate prices each launch on what ran
        "seeds": 1,
        "baseline": True,
    }
    # the search stage's share of the budget; the confirm stage may spend the rest
    if search.usd is not None:
        section["budget_usd"] = round(search.usd, 6)
    if search.seconds is not None:
        section["time_budget_s"] = round(search.seconds, 3)
    section["space"] = d.space
    return section


def sweep_data(d: Design) -> dict:
    """The file's content as data (its order is the file's)."""
    b = d.base
    defaults = [
        {"override /model": b.model.name},
        {"override /data": b.data.name},
        {"override /hardware": b.hardware.name},
    ]
    data: dict = {
        "defaults": defaults,
        "sweep": _sweep_section(d),
        "model": b.model.model_dump(mode="json"),
        "data": b.data.model_dump(mode="json"),
        "hardware": b.hardware.model_dump(mode="json"),
        "train": b.train.model_dump(mode="json") | {"eval_every": d.eval_every},
        "results_dir": str(b.results_path),
    }
    tracking = {k: v for k, v in b.tracking.model_dump(mode="json").items() if v is not None}
    if tracking:
        data["tracking"] = tracking
    if b.storage:
        data["storage"] = b.storage
    return data


def sweep_text(d: Design) -> str:
    body = yaml.safe_dump(sweep_data(d), sort_keys=False, default_flow_style=None, width=100)
    return f"{_header(d)}\n{body}"


def write_sweep_file(d: Design) -> tuple[Path, Path | None]:
    """RESULTS/auto/sweep.yaml, and where a different file found there was kept (an edited
    one: RESULTS/auto/sweep.edited.yaml), or None."""
    path = sweep_path(d.base)
    text = sweep_text(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = None
    if path.is_file() and path.read_text() != text:
        kept = path.with_name("sweep.edited.yaml")
        path.replace(kept)
    if not path.is_file():
        path.write_text(text)
    return path, kept
