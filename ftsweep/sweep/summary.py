"""The end-of-sweep summary: the best run per method, read back from MLflow."""

from __future__ import annotations

from ftsweep.config import Config
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


def print_summary(console, cfg: Config, outcome: SweepOutcome) -> None:
    from rich.table import Table

    finished = finished_runs_by_trial(outcome.tracking_uri, outcome.experiment)
    runs = [finished[s.trial_id] for s in outcome.trials if s.trial_id in finished]
    table = Table(
        title=f"best run per method ({len(runs)}/{len(outcome.trials)} trials finished)",
        title_justify="left",
    )
    for column in (
        "method",
        "run",
        "quality",
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
            f"{m.get('quality', float('nan')):.3f}",
            f"{m.get('eval_loss', float('nan')):.3f}",
            f"{m.get('forgetting', float('nan')):+.3f}",
            f"{m.get('wall_time_s', float('nan')):.0f}",
            f"{m.get('cost_usd', float('nan')):.5f}",
            f"{int(m.get('trainable_params', 0)):,}",
            f"{m.get('artifact_mb', float('nan')):.2f}",
        )
    console.print(table)
    for run in finished.values():
        if run.data.params.get("method") == "none":  # the untrained base model (ftsweep.baseline)
            console.print(
                f"base model, untrained, on {run.data.params.get('data')}: quality "
                f"{run.data.metrics.get('quality', float('nan')):.3f} (the bar each run must clear)"
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
