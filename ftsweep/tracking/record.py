"""The MLflow record of a trial: one run per trial, keyed by a stable trial id.

This record is a contract that the report and other tools read:

- params: `method`, `learning_rate`, and for LoRA-type runs `lora_r`, `lora_alpha`,
  `target_modules` (absent for full runs), plus the model, data and training knobs;
- metrics: `quality`, `eval_loss`, `wall_time_s`, `tokens_per_s`, `peak_mem_gb`,
  `trainable_params`, `artifact_mb`, `cost_usd` (and `train_loss` by step);
- tags: `ftsweep.sweep`, `ftsweep.trial_id` (stable for the life of a trial, across resumes),
  `ftsweep.run_id` (the invocation that last ran it), `ftsweep.stop_reason`; a run that ran
  out of memory also carries `ftsweep.plan_peak_gb` (the plan's estimate) and
  `ftsweep.peak_mem_gb` (what was measured when it failed).

Runs are found again by `ftsweep.trial_id`, never by an in-memory map, so a resumed sweep
reopens a trial's run instead of opening a second one.

Every write survives a busy or restarting store (see `retrying`):

- SQLite: a new store's tables are created, and experiments are created, under a file lock
  beside the .db (`mlflow.db.lock`), so many processes starting at once on an empty store
  neither race MLflow's schema migration nor create an experiment twice; "database is
  locked" is retried, not shown.
- A tracking server (cluster mode, `python -m ftsweep.ops.server`): connection refused or reset
  while it restarts, and HTTP 5xx, are retried with backoff. MLflow's HTTP client retries
  first (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`); this layer then retries for at most
  `FTSWEEP_TRACKING_RETRY_S` seconds (default 300) before raising `TrackingUnavailable`.
- Nothing is logged twice: a retried batch carries the same timestamps, so the store's
  primary key drops a metric row it already has; params are re-logged with equal values;
  a run is created again only after a look-up by trial id finds none.

Secrets in a tracking URI (`user:password@`, `?token=`) are redacted by `redact_uri` wherever
a URI or an error message is shown or recorded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ftsweep.config import Config

TAG_SWEEP = "ftsweep.sweep"
TAG_TRIAL_ID = "ftsweep.trial_id"
TAG_RUN_ID = "ftsweep.run_id"
TAG_STOP_REASON = "ftsweep.stop_reason"
TAG_ERROR = "ftsweep.error"
TAG_METHOD = "ftsweep.method"
TAG_PLAN_PEAK_GB = "ftsweep.plan_peak_gb"
TAG_PEAK_MEM_GB = "ftsweep.peak_mem_gb"
TAG_FAILURES = "ftsweep.failures"  # how many times the trial was restarted after it broke off
TAG_RESUMED_FROM = "ftsweep.resumed_from_step"
TAG_WORKER = "ftsweep.worker"  # host:pid of the process running the trial, for operators

METRICS = (
    "quality",
    "eval_loss",
    "wall_time_s",
    "tokens_per_s",
    "peak_mem_gb",
    "trainable_params",
    "artifact_mb",
    "cost_usd",
    "forgetting",
)

RETRY_ENV = "FTSWEEP_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 300.0

_log = logging.getLogger(__name__)
T = TypeVar("T")


# --- secrets ---------------------------------------------------------------------------------

# scheme://userinfo@ : the password (or a token used as the user name) goes.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s@]+)@")
# ?token=... &password=... &X-Amz-Signature=... : the value goes.
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][\w.\-]*(?:token|passw|pwd|secret|key|sig|credential|auth)[\w.\-]*=)[^&#\s]*",
    re.IGNORECASE,
)
REDACTED = "***"


def _redact_userinfo(match: re.Match) -> str:
    user, sep, _password = match["userinfo"].partition(":")
    shown = f"{user}:{REDACTED}" if sep else REDACTED
    return f"{match['scheme']}{shown}@"


def redact_uri(text: str) -> str:
    """A URI, or any text that contains URIs, with passwords and tokens replaced by ***.

    `postgresql://mlflow:pw@db:5432/mlflow` -> `postgresql://mlflow:***@db:5432/mlflow`;
    `https://tok@host` -> `https://***@host`; `http://host/?token=abc` -> `http://host/?token=***`.
    """
    text = _USERINFO.sub(_redact_userinfo, text)
    return _SECRET_QUERY.sub(lambda m: m["key"] + REDACTED, text)


# --- transient errors and retries --------------------------------------------------------------


class TrackingUnavailable(ConnectionError):
    """The tracking store stayed busy or unreachable for the whole retry budget.

    A ConnectionError, so the sweep treats it as transient (Ray retries the trial).
    """


# Lower-cased fragments of errors that go away on their own: a writer holding SQLite's lock,
# a tracking server or PostgreSQL restarting, a proxy in front of either. A refused password
# or a missing table is not among them: those are raised at once.
_TRANSIENT_MARKERS = (
    "database is locked",
    "database table is locked",
    "deadlock",
    "connection refused",
    "connection reset",
    "connection aborted",
    "remote end closed connection",
    "remotedisconnected",
    "max retries exceeded",
    "too many 5",  # urllib3: "too many 503 error responses"
    "temporarily unavailable",
    "temporarily_unavailable",
    "server closed the connection",
    "could not connect to server",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "broken pipe",
    "read timed out",
)
_HTTP_5XX = re.compile(r"(?:error code|status(?: code)?|http)\D{0,4}5\d\d\b", re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Whether a tracking error is worth retrying: the store was busy or briefly away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError) and not isinstance(
            current, TrackingUnavailable
        ):
            return True
        text = f"{type(current).__name__}: {current}".lower()
        if any(marker in text for marker in _TRANSIENT_MARKERS) or _HTTP_5XX.search(text):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_budget_s() -> float:
    return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact_uri(lines[0] if lines else type(exc).__name__)[:300]


def retrying(call: Callable[[], T], what: str, uri: str, budget_s: float | None = None) -> T:
    """`call()`, retried with jittered exponential backoff while it fails transiently.

    Gives up with `TrackingUnavailable` once `budget_s` (default `FTSWEEP_TRACKING_RETRY_S`)
    has passed: no new attempt starts after that. Errors that are not transient are raised
    at once. Only operations that are safe to repeat are passed here.
    """
    budget = retry_budget_s() if budget_s is None else budget_s
    started = time.monotonic()
    delay = 0.05
    warned = False
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            waited = time.monotonic() - started
            if waited >= budget:
                raise TrackingUnavailable(
                    f"MLflow tracking store {redact_uri(uri)} stayed unavailable for {waited:.0f} s "
                    f"while {what} ({RETRY_ENV}={budget:g}): {type(exc).__name__}: {_first_line(exc)}"
                ) from exc
            _log.debug("retrying %s after %s: %s", what, type(exc).__name__, _first_line(exc))
            if not warned and waited > 5:
                warned = True
                _log.warning(
                    "MLflow tracking store %s busy or unreachable while %s; retrying for up to %g s",
                    redact_uri(uri),
                    what,
                    budget,
                )
            # Full jitter spreads processes that collided on the same lock apart.
            time.sleep(min(random.uniform(0.5, 1.5) * delay, max(0.0, budget - waited)))
            delay = min(delay * 2, 5.0)


class _LockContentionFilter(logging.Filter):
    """Drops MLflow's traceback for SQLite lock contention: `retrying` handles it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        lowered = text.lower()
        return "database is locked" not in lowered and "database table is locked" not in lowered


_filter_installed = False


def _quiet_lock_contention() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("mlflow.store.db.utils").addFilter(_LockContentionFilter())
        _filter_installed = True


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
    path.parent.mkdir(parents=True, exist_ok=True)
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

    def create_run_once(self, experiment_id: str, run_name: str, tags: dict[str, str]):
        """Create a run tagged with a trial id, retried without ever creating two: an attempt
        that failed may still have created it, so each retry first looks it up by trial id."""
        trial_id = tags[TAG_TRIAL_ID]
        attempted = False

        def attempt():
            nonlocal attempted
            if attempted:
                found = find_trial_runs(self._client, experiment_id, trial_id)
                if found:
                    return found[0]
            attempted = True
            return self._client.create_run(experiment_id, run_name=run_name, tags=tags)

        return retrying(attempt, "creating a run", self.uri)


def get_client(uri: str) -> RetryingClient:
    _quiet_lock_contention()
    if redact_uri(uri) != uri:
        # MLflow prints "View run ... at: URL" with the tracking URI as given, secrets and all,
        # when a run ends on a server; ftsweep prints its own (redacted) pointers instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return RetryingClient(_open_client(uri), uri)


# --- the record ------------------------------------------------------------------------------


def tracking_uri(cfg: Config) -> str:
    if cfg.tracking.uri:
        return cfg.tracking.uri
    return f"sqlite:///{cfg.results_path / 'mlflow.db'}"


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.sweep.name


def run_params(cfg: Config) -> dict[str, Any]:
    """What defines a trial, as MLflow params. LoRA knobs only where they mean something."""
    method = cfg.method
    params: dict[str, Any] = {
        "method": method.name,
        "learning_rate": method.learning_rate,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "hardware": cfg.hardware.name,
        "max_steps": cfg.train.max_steps,
        "batch_size": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "seq_len": cfg.train.seq_len,
        "seed": cfg.train.seed,
        "precision": cfg.train.precision,
    }
    # Recorded (and so part of the trial id) when set: the default 0 adds nothing, which keeps
    # the ids of trials recorded before these knobs were.
    params |= {
        k: getattr(method, k) for k in ("weight_decay", "warmup_ratio") if getattr(method, k)
    }
    params |= method.spec.record_params(method)
    return params


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


def find_trial_runs(client, experiment_id: str, trial_id: str) -> list:
    from ftsweep.tracking.queries import search_all

    return search_all(client, [experiment_id], f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'")


def mark_abandoned_runs(client, experiment_id: str, reason: str = "interrupted") -> int:
    """Runs a dead driver left RUNNING become KILLED with a reason; returns how many."""
    from ftsweep.tracking.queries import search_all

    runs = search_all(client, [experiment_id], "attributes.status = 'RUNNING'")
    for run in runs:
        client.set_tag(run.info.run_id, TAG_STOP_REASON, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


class RunRecorder:
    """Writes to one open run: metrics after the steps it already has, artifacts, tags.

    What a worker-group trial's rank 0 logs through: the driver opened (or reopened) the run,
    and the recorder only writes to it, so a healthy trial is never counted as restarted.
    """

    def __init__(self, client, run_id: str, logged_steps: dict[str, int] | None = None):
        self.client = client
        self.run_id = run_id
        self.logged_steps = dict(logged_steps or {})  # per metric: the last step already recorded

    @classmethod
    def attach(cls, uri: str, run_id: str, logged_steps: dict[str, int] | None = None):
        return cls(get_client(uri), run_id, logged_steps)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        # One timestamp for the batch, kept across retries: a batch the store took before a
        # connection dropped is then a duplicate of the same rows, which it ignores.
        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None
            and math.isfinite(float(v))
            and step > self.logged_steps.get(k, -1)  # not already logged before a resume
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path=artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)


class TrialRun(RunRecorder):
    """One trial's MLflow run: opened or reopened by trial id, closed with a status and reason."""

    def __init__(
        self,
        cfg: Config,
        trial_id: str,
        run_name: str,
        invocation_id: str,
        params: dict[str, Any] | None = None,
    ):
        """`params` replaces the config's own trial params (a run that is not a trial)."""
        params = run_params(cfg) if params is None else params
        self.cfg = cfg
        self.trial_id = trial_id
        self.client = get_client(tracking_uri(cfg))
        self.experiment_id = ensure_experiment(
            self.client, experiment_name(cfg), cfg.results_path / "mlartifacts"
        )
        self.finished_run = None
        self.logged_steps: dict[str, int] = {}  # per metric: the last step already recorded
        self.failures = 0
        runs = find_trial_runs(self.client, self.experiment_id, trial_id)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            self.finished_run = finished[0]
            self.run_id = finished[0].info.run_id
            return
        tags = {
            TAG_SWEEP: cfg.sweep.name,
            TAG_TRIAL_ID: trial_id,
            TAG_RUN_ID: invocation_id,
            TAG_METHOD: str(params["method"]),
            TAG_WORKER: f"{socket.gethostname()}:{os.getpid()}",
        }
        if runs:
            # Resume: reopen the trial's own run and log only steps after those it already has.
            run = runs[0]
            self.run_id = run.info.run_id
            self.failures = int(run.data.tags.get(TAG_FAILURES, "0")) + 1
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, TAG_FAILURES, str(self.failures))
            for key in run.data.metrics:
                history = self.client.get_metric_history(self.run_id, key)
                self.logged_steps[key] = max((m.step for m in history), default=-1)
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)
            self.client.set_tag(self.run_id, TAG_STOP_REASON, "running")
        else:
            run = self.client.create_run_once(
                self.experiment_id, run_name, tags | {TAG_STOP_REASON: "running"}
            )
            self.run_id = run.info.run_id
            self._log_params(params)

    @property
    def already_finished(self) -> bool:
        return self.finished_run is not None

    def recorded_metrics(self) -> dict[str, float]:
        return dict(self.finished_run.data.metrics) if self.finished_run else {}

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def finish(
        self,
        status: str,
        stop_reason: str,
        error: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.client.set_tag(self.run_id, TAG_STOP_REASON, stop_reason)
        if error:
            self.client.set_tag(self.run_id, TAG_ERROR, redact_uri(error)[:4000])
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run_id, key, value)
        self.client.set_terminated(self.run_id, status=status)
