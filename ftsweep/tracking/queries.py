"""Reading runs back: every query pages through the store, so none is cut at a page size."""

from __future__ import annotations

from collections.abc import Callable

PAGE_SIZE = 1000  # MLflow's own maximum for a tracking server's search


def _every_page(search: Callable, **kwargs) -> list:
    """All results of an MLflow search, page after page (its `page_token`)."""
    found, token = [], None
    while True:
        page = search(**kwargs, max_results=PAGE_SIZE, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def search_all(
    client, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None
) -> list:
    """Every run matching the filter, page by page."""
    return _every_page(
        client.search_runs,
        experiment_ids=experiment_ids,
        filter_string=filter_string,
        order_by=order_by,
    )


def all_experiments(client, filter_string: str | None = None) -> list:
    """Every active experiment of the store matching the filter, page by page (MLflow's
    `search_experiments` returns one page of 1,000 unless asked for the next)."""
    return _every_page(client.search_experiments, filter_string=filter_string)


def experiment_runs(client, experiment_name: str, filter_string: str = "") -> list:
    """Every run of the named experiment matching the filter; none when it does not exist."""
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        return []
    return search_all(client, [found.experiment_id], filter_string)
