"""Each run's per-example scores, read back from its MLflow artifact `scores/scores.json`:

    {"validation": {"ids": [...], "scores": [...]}, "test": {"ids": [...], "scores": [...]}}

What lets two runs be compared on the same examples (a paired bootstrap) instead of through
their logged intervals. Each run's file is fetched once per process (and, given a cache folder,
once at all: a finished run's scores never change). A run without the file (recorded before
there were any, or failed before scoring) has none, and `why_none` says so.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ftsweep.data.intervals import as_scores
from ftsweep.report.runs import RunRow

SCORES_DIR = "scores"
SCORES_FILE = "scores.json"
SCORES_PATH = f"{SCORES_DIR}/{SCORES_FILE}"
NO_SCORES = f"no per-example scores ({SCORES_PATH}) recorded"


@dataclass(frozen=True)
class RunScores:
    """One run's scores by example id, per split (`test` empty when none was recorded)."""

    validation: dict[str, float]
    test: dict[str, float]


def parse_scores(text: str) -> RunScores:
    """scores.json's text as RunScores; ValueError naming what is wrong with it."""
    data = json.loads(text)
    if not isinstance(data, dict) or "validation" not in data:
        raise ValueError("no 'validation' split")
    splits = {}
    for split in ("validation", "test"):
        part = data.get(split)
        if part is None and split == "test":
            splits[split] = {}
            continue
        if not isinstance(part, dict) or not {"ids", "scores"} <= set(part):
            raise ValueError(f"'{split}' is not {{ids, scores}}")
        try:
            splits[split] = as_scores(part["ids"], part["scores"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'{split}': {exc}") from None
    if not splits["validation"]:
        raise ValueError("the validation split is empty")
    return RunScores(splits["validation"], splits["test"])


class ScoreSource:
    """Fetches runs' scores through MLflow, each run's once; `cache_dir` keeps finished runs'
    files between reports."""

    # Shared by every source in the process: a run's scores are fetched once however many
    # analyses ask (the report, then `ftsweep merge`'s default in the same process).
    _memory: dict[tuple[str, str], RunScores | str] = {}

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def scores(self, row: RunRow) -> RunScores | None:
        found = self._get(row)
        return found if isinstance(found, RunScores) else None

    def why_none(self, row: RunRow) -> str | None:
        """Why the run has no usable scores, or None when it has them."""
        found = self._get(row)
        return None if isinstance(found, RunScores) else found

    def _get(self, row: RunRow) -> RunScores | str:
        key = (row.tracking_uri, row.run_id)
        if key in self._memory:
            return self._memory[key]
        found = self._fetch(row)
        # A running run may still log its scores: only a finished run's answer is kept.
        if row.status == "FINISHED":
            self._memory[key] = found
        return found

    def _cached_file(self, row: RunRow) -> Path | None:
        if self.cache_dir is None or row.status != "FINISHED":
            return None
        return self.cache_dir / f"{re.sub(r'[^A-Za-z0-9_-]', '_', row.run_id)}.json"

    def _fetch(self, row: RunRow) -> RunScores | str:
        if not row.tracking_uri:
            return NO_SCORES
        cached = self._cached_file(row)
        if cached is not None and cached.is_file():
            try:
                return parse_scores(cached.read_text())
            except ValueError:
                cached.unlink(missing_ok=True)  # a damaged copy: fetch it again
        text = self._download(row)
        if text is None:
            return NO_SCORES
        try:
            parsed = parse_scores(text)
        except ValueError as exc:
            return f"{SCORES_PATH} is unreadable ({exc})"
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(text)
        return parsed

    @staticmethod
    def _download(row: RunRow) -> str | None:
        from ftsweep.tracking.store import get_client

        if row.artifact_uri.startswith("file:"):
            # On this disk: read the file where it is. Through the client each run costs a
            # listing and a download that each look the run up again (37 ms a run, 6 minutes
            # of a first report over 10,000 runs; 2 ms like this).
            from mlflow.utils.file_utils import local_file_uri_to_path

            path = Path(local_file_uri_to_path(row.artifact_uri)) / SCORES_PATH
            return path.read_text() if path.is_file() else None
        client = get_client(row.tracking_uri)
        listed = {item.path for item in client.list_artifacts(row.run_id, SCORES_DIR)}
        if SCORES_PATH not in listed:
            return None
        with tempfile.TemporaryDirectory(prefix="ftsweep-scores-") as tmp:
            local = client.download_artifacts(row.run_id, SCORES_PATH, tmp)
            return Path(local).read_text()
