"""Where the record lives: the store's URI and experiment, and a client whose calls are retried.

- SQLite: a new store's tables are created, and experiments are created, under a file lock
  beside the .db (`mlflow.db.lock`, see `store_lock`), so many processes starting at once on
  an empty store neither race MLflow's schema migration nor create an experiment twice.
- A tracking server: its database serialises writes, and its unique experiment name does
  what the lock does for SQLite.

Every call made through `get_client` is retried on transient errors (`ftsweep.tracking.retry`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ftsweep.config import Config
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.retry import quiet_lock_contention, retrying

# --- the SQLite store ------------------------------------------------------------------------


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:///relative/path.db or sqlite:////absolute/path.db
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive across processes and threads for a SQLite store (an flock on a file beside
    the .db, taken through a new descriptor each time); nothing for a tracking server, whose
    database serialises its own writes."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: MLflow's own retries only
        yield
        return
    if not path.parent.exists():
        # Usually RESULTS: created 0700, as everything ftsweep reads back (`ftsweep.trust`).
        from ftsweep.trust import private_dir

        private_dir(path.parent, "the SQLite store's folder")
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_prepared: set[str] = set()


def _open_client(uri: str):
    """An MlflowClient; a new SQLite store's tables are created once, one process at a time.

    MLflow opens the store when the client is made, and its SqlAlchemyStore creates and
    migrates the tables of an empty database without a lock: processes opening one new store
    at once run the migrations over each other ("table already exists", alembic version
    mismatches). Opening it under the store lock lets the first process migrate and the others
    find the finished schema. MLflow caches the store per URI, so this happens once a process.
    """
    from mlflow import MlflowClient

    if uri in _prepared or sqlite_path(uri) is None:
        return MlflowClient(tracking_uri=uri)
    with store_lock(uri):
        client = retrying(lambda: MlflowClient(tracking_uri=uri), "opening the store", uri)
    _prepared.add(uri)
    return client


# --- the client ------------------------------------------------------------------------------


class RetryingClient:
    """An MlflowClient whose calls are retried on transient store errors (see `retrying`).

    `create_run` is not retried blindly (it is not safe to repeat): TrialRun creates runs
    through `create_run_once`.
    """

    _NOT_RETRIED = frozenset({"create_run"})

    def __init__(self, client, uri: str):
        self._client = client
        self.uri = uri

    @property
    def raw(self):
        """The MlflowClient underneath, without retries."""
        return self._client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name.startswith("_") or name in self._NOT_RETRIED or not callable(attr):
            return attr

        def call(*args, **kwargs):
            return retrying(lambda: attr(*args, **kwargs), name, self.uri)

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call

    def create_run_once(
        self,
        experiment_id: str,
        run_name: str,
        tags: dict[str, str],
        find_existing: Callable[[object], list],
    ):
        """Create a run, retried without ever creating two: an attempt that failed may still
        have created it, so each retry first looks for it with `find_existing(raw client)`
        (for a trial: its runs by trial id, `ftsweep.tracking.record.find_trial_runs`)."""
        attempted = False

        def attempt():
            nonlocal attempted
            if attempted:
                found = find_existing(self._client)
                if found:
                    return found[0]
            attempted = True
            return self._client.create_run(experiment_id, run_name=run_name, tags=tags)

        return retrying(attempt, "creating a run", self.uri)


def get_client(uri: str) -> RetryingClient:
    """A retrying client of the store at `uri` (a new SQLite store is created safely)."""
    quiet_lock_contention()
    if redact_uri(uri) != uri:
        # MLflow prints "View run ... at: URL" with the tracking URI as given, secrets and all,
        # when a run ends on a server; ftsweep prints its own (redacted) pointers instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return RetryingClient(_open_client(uri), uri)


# --- the sweep's store and experiment ----------------------------------------------------------


def tracking_uri(cfg: Config) -> str:
    """`tracking.uri`, or a SQLite store in the results folder."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    return f"sqlite:///{cfg.results_path / 'mlflow.db'}"


def experiment_name(cfg: Config) -> str:
    """`tracking.experiment`, or the sweep's name."""
    return cfg.tracking.experiment or cfg.sweep.name


def ensure_experiment(client, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, creating it (with artifacts beside the store) when missing.

    On SQLite the look-up and the creation hold the store lock, so processes starting at once
    create it exactly once; a tracking server's unique name constraint does the same there.
    A tracking server keeps artifacts where it was told to (its --artifacts-destination), not
    in a folder on whichever worker happens to create the experiment.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri = getattr(client, "uri", None)
    if uri and uri.startswith(("http://", "https://")):
        artifact_root = None
    location = artifact_root.resolve().as_uri() if artifact_root else None
    with store_lock(uri) if uri else contextlib.nullcontext():
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:
            # Another process created it between our look-up and create (or a retried create
            # had already succeeded).
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id
