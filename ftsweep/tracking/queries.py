"""Reading runs back: every query pages through the store, so none is cut at a page size."""

from __future__ import annotations

PAGE_SIZE = 1000  # MLflow's own maximum for a tracking server's search


def search_all(
    client, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None
) -> list:
    """Every run matching the filter, page by page (MLflow's `page_token`)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=PAGE_SIZE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def experiment_runs(client, experiment_name: str, filter_string: str = "") -> list:
    """Every run of the named experiment matching the filter; none when it does not exist."""
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        return []
    return search_all(client, [found.experiment_id], filter_string)
