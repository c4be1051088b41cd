"""A sweep's runs read back from MLflow: `RunRow` (one run as the report reads it) and `load_rows`.

A row remembers the store it was read from, so what it logged besides params and metrics (its
per-example scores, `ftsweep.report.scores`) can be fetched when a comparison needs them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ftsweep.config import ConfigError
from ftsweep.methods import find_method
from ftsweep.report.methods import is_adapter
from ftsweep.tracking.queries import all_experiments, search_all
from ftsweep.tracking.record import TAG_ERROR, TAG_STOP_REASON
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.store import get_client


@dataclass(frozen=True)
class RunRow:
    """One MLflow run as the report reads it: params as strings, metrics as floats."""

    run_id: str
    name: str
    status: str
    stop_reason: str
    params: dict[str, str]
    metrics: dict[str, float]
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    tracking_uri: str = ""  # the store it was read from ("" for a row built by hand)
    artifact_uri: str = ""  # where its artifacts are (a file: URI when they are on this disk)

    @property
    def method(self) -> str:
        return self.params.get("method", "?")

    @property
    def is_adapter(self) -> bool:
        """A LoRA-type run: its artifact is an adapter."""
        return is_adapter(self.method)

    @property
    def quality(self) -> float:
        return self.metrics.get("quality", math.nan)

    @property
    def test_quality(self) -> float:
        return self.metrics.get("test_quality", math.nan)

    def logged_interval(self, prefix: str = "") -> tuple[float, float] | None:
        """The 95% interval the run logged for `quality` (prefix "test_": `test_quality`), or
        None when it logged none (runs recorded before intervals were)."""
        low = self.metrics.get(f"{prefix}quality_ci_low", math.nan)
        high = self.metrics.get(f"{prefix}quality_ci_high", math.nan)
        return (low, high) if math.isfinite(low) and math.isfinite(high) else None

    @property
    def num_examples(self) -> int | None:
        """Validation examples its quality is the mean of, where recorded."""
        n = self.metrics.get("num_eval_examples", math.nan)
        return int(n) if math.isfinite(n) else None

    @property
    def cost_usd(self) -> float:
        return self.metrics.get("cost_usd", math.nan)

    @property
    def wall_time_s(self) -> float:
        return self.metrics.get("wall_time_s", math.nan)

    @property
    def learning_rate(self) -> float | None:
        return _float(self.params.get("learning_rate"))

    @property
    def lora_r(self) -> int | None:
        r = _float(self.params.get("lora_r"))
        return int(r) if r is not None else None

    @property
    def alpha_ratio(self) -> float | None:
        alpha = _float(self.params.get("lora_alpha"))
        return alpha / self.lora_r if alpha is not None and self.lora_r else None

    @property
    def targets(self) -> str | None:
        return self.params.get("target_modules")

    @property
    def seed(self) -> str:
        return self.params.get("seed", "?")

    @property
    def usable(self) -> bool:
        """Finished on its own, with a quality and a cost: what the analysis may use."""
        return self.left_out_reason is None

    @property
    def left_out_reason(self) -> str | None:
        if self.status == "FAILED":
            return f"failed ({self.stop_reason})"
        if self.status != "FINISHED":
            state = self.status.lower()
            return (
                state if self.stop_reason in (state, "unknown") else f"{state} ({self.stop_reason})"
            )
        if self.stop_reason == "early_stopped":
            return "stopped early by the scheduler"
        if not (math.isfinite(self.quality) and math.isfinite(self.cost_usd)):
            return "no quality or cost recorded"
        return None

    @property
    def config_key(self) -> tuple:
        # Runs that differ only in their seed are repeats of one configuration.
        return tuple(sorted((k, v) for k, v in self.params.items() if k != "seed"))

    @property
    def setting_key(self) -> tuple:
        """The configuration but for its learning rate: runs that tuned it at one setting."""
        return tuple(
            sorted((k, v) for k, v in self.params.items() if k not in ("seed", "learning_rate"))
        )

    @property
    def knobs(self) -> str:
        """The knobs that tell this run's configuration apart, in a few words."""
        method = find_method(self.method)
        parts = list(method.describe(self.params)) if method is not None else []
        if self.learning_rate is not None:
            parts.append(f"lr={self.learning_rate:.0e}")
        return ", ".join(parts)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def check_store(tracking_uri: str) -> None:
    """A SQLite store must exist: opening its URI creates the file, and a typo must not leave
    an empty store behind."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise ConfigError(
                f"no MLflow store at {path}; run a sweep first (ftsweep sweep sweep=NAME)"
            )


def load_rows(tracking_uri: str, experiment: str) -> list[RunRow]:
    """Every run of the experiment, oldest first. Raises ConfigError if there is none."""
    check_store(tracking_uri)
    client = get_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in all_experiments(client) if e.name != "Default")
        have = ", ".join(names) if names else "none"
        raise ConfigError(
            f"no sweep named {experiment!r} in {redact_uri(tracking_uri)} (sweeps there: {have})"
        )
    runs = search_all(client, [found.experiment_id])
    if not runs:
        raise ConfigError(
            f"sweep {experiment!r} has no runs in {redact_uri(tracking_uri)}; run `ftsweep sweep sweep={experiment}`"
        )
    return [
        RunRow(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            status=r.info.status,
            stop_reason=r.data.tags.get(TAG_STOP_REASON, "unknown"),
            params=dict(r.data.params),
            metrics=dict(r.data.metrics),
            error=r.data.tags.get(TAG_ERROR, ""),
            tags=dict(r.data.tags),
            tracking_uri=tracking_uri,
            artifact_uri=r.info.artifact_uri or "",
        )
        for r in sorted(runs, key=lambda r: r.info.start_time or 0)
    ]
