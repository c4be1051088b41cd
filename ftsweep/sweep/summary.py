"""The end-of-sweep summary: the best run per method, read back from MLflow, per set of inputs.

Runs trained and scored on different inputs (tag `ftsweep.inputs`; `ftsweep.report.inputs`) are
never ranked together: each set gets its own table, with its base model's quality beside it.
Qualities carry the 95% interval each run logged; which configuration to use is the report's
call (`ftsweep report`), which compares runs on their per-example scores.
"""

from __future__ import annotations

import math

from ftsweep.config import Config
from ftsweep.report.inputs import inputs_key, inputs_sentence, split_by_inputs
from ftsweep.sweep.run import SweepOutcome, finished_runs_by_trial
from ftsweep.tracking.queries import experiment_runs
from ftsweep.tracking.record import TAG_ERROR, TAG_STOP_REASON, TAG_TRIAL_ID
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.store import get_client


def best_per_method(runs: list) -> dict[str, object]:
    """Highest quality per method; ties go to the cheaper run."""
    best: dict[str, object] = {}
    for run in runs:
        method = run.data.params.get("method", "?")
        key = (run.data.metrics.get("quality", -1.0), -run.data.metrics.get("cost_usd", 0.0))
        current = best.get(method)
        if current is None or key > (
            current.data.metrics.get("quality", -1.0),
            -current.data.metrics.get("cost_usd", 0.0),
        ):
            best[method] = run
    return best


def quality_text(metrics: dict, prefix: str = "") -> str:
    """A logged quality with its logged 95% interval: "0.938 [0.844, 1.000]"."""
    value = metrics.get(f"{prefix}quality", math.nan)
    low = metrics.get(f"{prefix}quality_ci_low", math.nan)
    high = metrics.get(f"{prefix}quality_ci_high", math.nan)
    if not math.isfinite(value):
        return "n/a"
    if math.isfinite(low) and math.isfinite(high):
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"


class _Keyed:
    """An MLflow run seen as the report's inputs grouping sees a row."""

    def __init__(self, run):
        self.run = run
        self.params = run.data.params
        self.tags = run.data.tags


def _table(title: str, runs: list):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in (
        "method",
        "run",
        "quality [95%]",
        "test quality [95%]",
        "eval loss",
        "forgetting",
        "wall s",
        "cost $",
        "trainable",
        "artifact MB",
    ):
        table.add_column(column)
    for method, run in sorted(best_per_method(runs).items()):
        m = run.data.metrics
        table.add_row(
            method,
            run.info.run_name,
            quality_text(m),
            quality_text(m, "test_"),
            f"{m.get('eval_loss', float('nan')):.3f}",
            f"{m.get('forgetting', float('nan')):+.3f}",
            f"{m.get('wall_time_s', float('nan')):.0f}",
            f"{m.get('cost_usd', float('nan')):.5f}",
            f"{int(m.get('trainable_params', 0)):,}",
            f"{m.get('artifact_mb', float('nan')):.2f}",
        )
    return table


def print_summary(console, cfg: Config, outcome: SweepOutcome) -> None:
    from rich.markup import escape

    finished = finished_runs_by_trial(outcome.tracking_uri, outcome.experiment)
    runs = [
        finished[s.trial_id]
        for s in outcome.trials
        if s.trial_id in finished and finished[s.trial_id].data.params.get("method") != "none"
    ]
    # The untrained base model (ftsweep.trial.baseline) of each set of inputs.
    bases = {
        inputs_key(r.data.tags, r.data.params)[0]: r
        for r in finished.values()
        if r.data.params.get("method") == "none"
    }
    groups = split_by_inputs([_Keyed(r) for r in runs]) or []
    several = len(groups) > 1
    if several:
        console.print(
            f"[yellow]the finished runs are on {len(groups)} different inputs, never compared: "
            "one table each (`ftsweep report` writes one report each)[/yellow]"
        )
    for group in groups or [None]:
        members = [k.run for k in group.rows] if group else []
        title = f"best run per method ({len(runs)}/{len(outcome.trials)} trials finished)"
        if several:
            title = (
                f"best run per method, inputs {group.id} "
                f"({len(members)} of {len(outcome.trials)} trials)"
            )
        console.print(_table(title, members))
        if several:
            console.print(escape(inputs_sentence(group)))
        base = bases.get(group.id) if group else None
        if base is None and not several and len(bases) == 1:
            base = next(iter(bases.values()))  # runs without the tag: the sweep's one base
        if base is not None:
            console.print(
                f"base model, untrained, on {base.data.params.get('data')}: quality "
                f"{quality_text(base.data.metrics)} (the bar each run must clear)"
            )
    for run in _unfinished_runs(outcome):
        tags = run.data.tags
        console.print(
            f"[yellow]{tags.get(TAG_TRIAL_ID)} ({run.info.run_name}): {run.info.status}, "
            f"{tags.get(TAG_STOP_REASON)}: {tags.get(TAG_ERROR, '')}[/yellow]"
        )
    for trial_id, error in outcome.errors.items():
        console.print(f"[red]{trial_id} errored in Ray: {redact_uri(error)}[/red]")
    store = redact_uri(outcome.tracking_uri)  # a server's URI may carry a password or token
    if store.startswith("sqlite:///"):
        console.print(
            f"MLflow UI: mlflow ui --backend-store-uri {store}   (or: make ui RESULTS={cfg.results_dir})"
        )
    else:
        console.print(f"MLflow UI: {store}")


def _unfinished_runs(outcome: SweepOutcome) -> list:
    """This sweep's runs that did not finish: failed, skipped for budget, killed."""
    client = get_client(outcome.tracking_uri)
    ids = {s.trial_id for s in outcome.trials}
    runs = experiment_runs(client, outcome.experiment, "attributes.status != 'FINISHED'")
    return [r for r in runs if r.data.tags.get(TAG_TRIAL_ID) in ids]
