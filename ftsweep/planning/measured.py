"""What earlier runs measured, read back from the results store, for the plan to learn from.

Every FINISHED trial run of the model in any experiment of the store becomes a row for
`ftsweep.planning.fit.calibrate`: its params (method, hardware, layout, batch, ...) and what it
measured (`peak_mem_gb`, `tokens_per_s`), with its run name and id so the plan can say which
runs it learnt from. The untrained base-model runs train nothing and are left out.
"""

from __future__ import annotations

from pathlib import Path


def measured_rows(tracking_uri: str, model: str) -> list[dict]:
    """Rows of the finished trial runs of `model` in the store; none when there is no store."""
    from ftsweep.tracking.queries import all_experiments, search_all
    from ftsweep.tracking.store import get_client, sqlite_path

    path = sqlite_path(tracking_uri)
    if path is not None and not Path(path).exists():
        return []  # no sweep has run here yet: nothing to learn from (and no store to create)
    client = get_client(tracking_uri)
    experiments = [e.experiment_id for e in all_experiments(client)]
    if not experiments:
        return []
    runs = search_all(
        client,
        experiments,
        f"attributes.status = 'FINISHED' and params.model = '{model}' and params.method != 'none'",
    )
    rows = []
    for run in runs:
        metrics = run.data.metrics
        if "peak_mem_gb" not in metrics and "tokens_per_s" not in metrics:
            continue
        rows.append(
            {
                **run.data.params,
                "peak_mem_gb": metrics.get("peak_mem_gb"),
                "tokens_per_s": metrics.get("tokens_per_s"),
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
            }
        )
    return rows
