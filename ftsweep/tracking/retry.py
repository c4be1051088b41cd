"""Tracking calls that survive a busy or restarting store: which errors pass, and the retries.

Every write survives a busy or restarting store (see `retrying`):

- SQLite: "database is locked" is retried, not shown (`quiet_lock_contention` drops MLflow's
  own traceback for it); the file lock that serialises schema and experiment creation is in
  `ftsweep.tracking.store`.
- A tracking server (cluster mode, `python -m ftsweep.ops.server`): connection refused or reset
  while it restarts, and HTTP 5xx, are retried with backoff. MLflow's HTTP client retries
  first (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`); this layer then retries for at most
  `FTSWEEP_TRACKING_RETRY_S` seconds (default 300) before raising `TrackingUnavailable`.

Only operations that are safe to repeat are retried; how the record keeps repeats from
logging anything twice is described in `ftsweep.tracking.record`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from ftsweep.tracking.redact import redact_uri

RETRY_ENV = "FTSWEEP_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 300.0

_log = logging.getLogger(__name__)
T = TypeVar("T")


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
    """Seconds a tracking call is retried for: `FTSWEEP_TRACKING_RETRY_S`, default 300."""
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


# --- SQLite lock contention in MLflow's log ----------------------------------------------------


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


def quiet_lock_contention() -> None:
    """Install `_LockContentionFilter` on MLflow's SQL store logger, once a process."""
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("mlflow.store.db.utils").addFilter(_LockContentionFilter())
        _filter_installed = True
