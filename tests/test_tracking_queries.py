"""Paged queries: every run comes back however many pages the store splits them into."""

from __future__ import annotations

import pytest

from ftsweep.tracking import queries
from ftsweep.tracking.queries import all_experiments, experiment_runs, search_all
from ftsweep.tracking.record import (
    TAG_STOP_REASON,
    TAG_TRIAL_ID,
    find_trial_runs,
    mark_abandoned_runs,
)
from ftsweep.tracking.store import get_client

SINGLES = 40  # runs of trials trial-0 .. trial-39, one run each
DUPLICATES = 9  # then runs 40 .. 48 all of trial-dup: more than a page of 7
TOTAL = SINGLES + DUPLICATES  # 49 = 7 x 7: a last page that is exactly full, too


def _trial(index: int) -> str:
    return f"trial-{index}" if index < SINGLES else "trial-dup"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store with experiment `many`: TOTAL runs, run i started at 1000 + i and tagged
    with its trial id and parity. Returns (client, experiment id, {index: run id})."""
    root = tmp_path_factory.mktemp("queries")
    client = get_client(f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.create_experiment("many")
    ids = {}
    for i in range(TOTAL):
        tags = {TAG_TRIAL_ID: _trial(i), "parity": "even" if i % 2 == 0 else "odd"}
        run = client.create_run(experiment_id, start_time=1000 + i, tags=tags)
        ids[i] = run.info.run_id
    return client, experiment_id, ids


class _PageCounter:
    """A client that remembers the size of each page its searches answered."""

    def __init__(self, client):
        self.client = client
        self.pages: list[int] = []

    def _counted(self, page):
        self.pages.append(len(page))
        return page

    def search_runs(self, *args, **kwargs):
        return self._counted(self.client.search_runs(*args, **kwargs))

    def search_experiments(self, *args, **kwargs):
        return self._counted(self.client.search_experiments(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("page_size", [7, 8, TOTAL, 1000])
def test_search_all_returns_every_run_over_any_number_of_pages(store, monkeypatch, page_size):
    client, experiment_id, ids = store
    monkeypatch.setattr(queries, "PAGE_SIZE", page_size)
    counted = _PageCounter(client)
    runs = search_all(counted, [experiment_id])
    found = [r.info.run_id for r in runs]
    assert len(found) == TOTAL  # none lost, none twice
    assert set(found) == set(ids.values())
    assert all(size <= page_size for size in counted.pages)
    if page_size < TOTAL:
        assert len(counted.pages) >= -(-TOTAL // page_size)  # the query really paged


def test_search_all_honours_the_filter_and_the_order_across_pages(store, monkeypatch):
    client, experiment_id, ids = store
    monkeypatch.setattr(queries, "PAGE_SIZE", 7)
    even = search_all(client, [experiment_id], "tags.parity = 'even'")
    assert sorted(r.info.run_id for r in even) == sorted(ids[i] for i in range(0, TOTAL, 2))
    assert {r.data.tags["parity"] for r in even} == {"even"}
    newest_first = search_all(client, [experiment_id], order_by=["attributes.start_time DESC"])
    assert [r.info.run_id for r in newest_first] == [ids[i] for i in reversed(range(TOTAL))]
    oldest_odd = search_all(
        client, [experiment_id], "tags.parity = 'odd'", order_by=["attributes.start_time ASC"]
    )
    assert [r.info.run_id for r in oldest_odd] == [ids[i] for i in range(1, TOTAL, 2)]


def test_experiment_runs_pages_by_name(store, monkeypatch):
    client, _experiment_id, ids = store
    monkeypatch.setattr(queries, "PAGE_SIZE", 7)
    assert len(experiment_runs(client, "many")) == TOTAL
    odd = experiment_runs(client, "many", "tags.parity = 'odd'")
    assert sorted(r.info.run_id for r in odd) == sorted(ids[i] for i in range(1, TOTAL, 2))
    assert experiment_runs(client, "no-such-experiment") == []


def test_find_trial_runs_finds_a_trials_run_among_many_pages(store, monkeypatch):
    client, experiment_id, ids = store
    monkeypatch.setattr(queries, "PAGE_SIZE", 7)
    # trial-3, not trial-30 .. trial-39; the oldest run, on the last page of an unfiltered search.
    for index in (3, 0, SINGLES - 1):
        (run,) = find_trial_runs(client, experiment_id, f"trial-{index}")
        assert run.info.run_id == ids[index]
    # A trial with more runs than a page holds: all of them.
    dup = find_trial_runs(client, experiment_id, "trial-dup")
    assert sorted(r.info.run_id for r in dup) == sorted(ids[i] for i in range(SINGLES, TOTAL))
    assert find_trial_runs(client, experiment_id, "trial-404") == []


def test_mark_abandoned_runs_kills_every_running_run_on_every_page(store, monkeypatch):
    client, _experiment_id, _ids = store
    monkeypatch.setattr(queries, "PAGE_SIZE", 4)
    experiment_id = client.create_experiment("abandoned")
    running = [client.create_run(experiment_id).info.run_id for _ in range(10)]
    finished = [client.create_run(experiment_id).info.run_id for _ in range(5)]
    for run_id in finished:
        client.set_terminated(run_id, status="FINISHED")
    assert mark_abandoned_runs(client, experiment_id, reason="driver died") == len(running)
    for run_id in running:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[TAG_STOP_REASON] == "driver died"
    for run_id in finished:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and TAG_STOP_REASON not in run.data.tags
    assert mark_abandoned_runs(client, experiment_id) == 0


def test_all_experiments_pages_through_every_experiment(tmp_path, monkeypatch):
    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    names = {f"sweep-{i}" for i in range(9)}
    for name in names:
        client.create_experiment(name)
    monkeypatch.setattr(queries, "PAGE_SIZE", 4)  # 9 sweeps and Default: three pages
    counted = _PageCounter(client)
    found = [e.name for e in all_experiments(counted)]
    assert sorted(found) == sorted(names | {"Default"})
    assert counted.pages == [4, 4, 2]
    assert {e.name for e in all_experiments(client, "name LIKE 'sweep-%'")} == names


@pytest.mark.slow
def test_search_all_pages_at_the_real_page_size(store):
    """One run more than MLflow's page at the real PAGE_SIZE (~1,000 runs: several seconds)."""
    client, _experiment_id, _ids = store
    experiment_id = client.create_experiment("over-a-page")
    created = {
        client.create_run(experiment_id, start_time=1000 + i).info.run_id
        for i in range(queries.PAGE_SIZE + 1)
    }
    runs = search_all(client, [experiment_id])
    assert len(runs) == len(created) and {r.info.run_id for r in runs} == created
