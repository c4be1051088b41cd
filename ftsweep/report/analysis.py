"""The experiments-per-dollar report: what a sweep measured, read back from MLflow only.

`write_report` turns one experiment's runs into `report.md`, `report.html` and PNG plots:
quality against cost with its Pareto front, LoRA/QLoRA as a percentage of full fine-tuning,
the vendor guide's cost table re-measured (and projected to a target GPU), the effect of each
knob, a recommendation with its evidence, and what the sweep cannot tell.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ftsweep.config import CONF_DIR, ConfigError, HardwareConfig
from ftsweep.methods import find_method
from ftsweep.planning.cost import experiments_per_dollar, run_cost_usd
from ftsweep.tracking.record import TAG_ERROR, TAG_STOP_REASON, get_client, redact_uri

METHOD_ORDER = ("full", "lora", "qlora")
METHOD_LABELS = {"full": "Full fine-tuning", "lora": "LoRA", "qlora": "QLoRA", "none": "Base model"}
BASELINE_METHOD = "none"  # the untrained base model's run (ftsweep.baseline)
# Two runs this close in quality are called equal unless the seeds spread wider.
MIN_TOLERANCE = 0.02
PRICE_MAX_AGE_DAYS = 90

# The vendor guide's cost table (7B model, 5K examples) and claims, as it states them.
GUIDE = {
    "full": {
        "device": "2x A100 80GB",
        "hours": "4-8 hours",
        "cost": "$50-150",
        "storage": "14 GB",
        "epd": (1, 2),
    },
    "lora": {
        "device": "1x A100 40GB",
        "hours": "1-3 hours",
        "cost": "$10-30",
        "storage": "50-200 MB",
        "epd": (5, 10),
    },
    "qlora": {
        "device": "1x T4 16GB",
        "hours": "2-4 hours",
        "cost": "$5-15",
        "storage": "50-200 MB",
        "epd": (10, 20),
    },
}
GUIDE_PERCENT_OF_FULL = (95.0, 99.0)
GUIDE_EPD_GAIN = (5.0, 20.0)  # "LoRA enables 5-20x more experiments for the same budget"
GUIDE_LR_RATIO = 10.0  # full 5e-6..1e-5 against LoRA 1e-4..3e-4


# --- runs ------------------------------------------------------------------------------------


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

    @property
    def method(self) -> str:
        return self.params.get("method", "?")

    @property
    def is_lora(self) -> bool:
        method = find_method(self.method)
        return method is not None and method.is_adapter

    @property
    def quality(self) -> float:
        return self.metrics.get("quality", math.nan)

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
    def knobs(self) -> str:
        """The knobs that tell this run's configuration apart, in a few words."""
        parts = []
        if self.is_lora:
            alpha = _float(self.params.get("lora_alpha"))
            parts += [f"r={self.lora_r}", f"alpha={alpha:g}" if alpha is not None else "alpha=?"]
            parts.append(f"targets={self.targets}")
        elif self.params.get("zero_stage", "0") != "0":
            offload = "+offload" if self.params.get("offload") == "True" else ""
            parts.append(f"ZeRO-{self.params['zero_stage']}{offload}")
        if self.learning_rate is not None:
            parts.append(f"lr={self.learning_rate:.0e}")
        return ", ".join(parts)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def _search_all(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _check_store(tracking_uri: str) -> None:
    # Opening a SQLite URI creates the file; a typo must not leave an empty store behind.
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise ConfigError(
                f"no MLflow store at {path}; run a sweep first (ftsweep sweep sweep=NAME)"
            )


def load_rows(tracking_uri: str, experiment: str) -> list[RunRow]:
    """Every run of the experiment, oldest first. Raises ConfigError if there is none."""
    _check_store(tracking_uri)
    client = get_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        have = ", ".join(names) if names else "none"
        raise ConfigError(
            f"no sweep named {experiment!r} in {redact_uri(tracking_uri)} (sweeps there: {have})"
        )
    runs = _search_all(client, found.experiment_id)
    if not runs:
        raise ConfigError(
            f"sweep {experiment!r} has no runs in {redact_uri(tracking_uri)}; run `ftsweep sweep sweep={experiment}`"
        )
    rows = [
        RunRow(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id[:8],
            status=r.info.status,
            stop_reason=r.data.tags.get(TAG_STOP_REASON, "unknown"),
            params=dict(r.data.params),
            metrics=dict(r.data.metrics),
            error=r.data.tags.get(TAG_ERROR, ""),
        )
        for r in sorted(runs, key=lambda r: r.info.start_time or 0)
    ]
    return rows


# --- analysis --------------------------------------------------------------------------------


@dataclass
class ConfigGroup:
    """The runs of one configuration, one per seed."""

    rows: list[RunRow]

    @property
    def first(self) -> RunRow:
        return self.rows[0]

    @property
    def key(self) -> tuple:
        return self.first.config_key

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def knobs(self) -> str:
        return self.first.knobs

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def qualities(self) -> list[float]:
        return [r.quality for r in self.rows]

    @property
    def quality(self) -> float:
        return statistics.fmean(self.qualities)

    @property
    def spread(self) -> float:
        return max(self.qualities) - min(self.qualities)

    @property
    def cost_usd(self) -> float:
        return statistics.fmean(r.cost_usd for r in self.rows)

    @property
    def best_run(self) -> RunRow:
        return max(self.rows, key=lambda r: (r.quality, -r.cost_usd))


def group_by_config(rows: Iterable[RunRow]) -> list[ConfigGroup]:
    groups: dict[tuple, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.config_key, []).append(row)
    return [ConfigGroup(g) for g in groups.values()]


def pareto_front(rows: Iterable[RunRow]) -> list[RunRow]:
    """Runs no other run beats on both cost (lower) and quality (higher), cheapest first."""
    front: list[RunRow] = []
    best_quality = -math.inf
    for row in sorted(rows, key=lambda r: (r.cost_usd, -r.quality)):
        if row.quality > best_quality:
            front.append(row)
            best_quality = row.quality
    return front


def quality_varies(rows: Iterable[RunRow]) -> bool:
    """False when every run scored the same: quality then cannot rank anything."""
    return len({round(r.quality, 9) for r in rows}) > 1


def seed_spread(groups: Iterable[ConfigGroup]) -> float | None:
    """The widest quality range among configurations run with more than one seed."""
    spreads = [g.spread for g in groups if g.n > 1]
    return max(spreads) if spreads else None


def quality_tolerance(groups: Iterable[ConfigGroup]) -> float:
    spread = seed_spread(groups)
    return max(MIN_TOLERANCE, spread or 0.0)


@dataclass
class Recommendation:
    group: ConfigGroup
    best: ConfigGroup  # highest mean quality in the sweep
    tolerance: float
    contenders: list[ConfigGroup]  # every configuration within tolerance of the best

    @property
    def run(self) -> RunRow:
        return self.group.best_run


def recommend(rows: Iterable[RunRow]) -> Recommendation | None:
    """The cheapest configuration whose mean quality is within tolerance of the best one."""
    groups = group_by_config(r for r in rows if r.usable)
    if not groups:
        return None
    tolerance = quality_tolerance(groups)
    best = max(groups, key=lambda g: (g.quality, -g.cost_usd))
    contenders = [g for g in groups if g.quality >= best.quality - tolerance - 1e-12]
    choice = min(contenders, key=lambda g: (g.cost_usd, -g.quality))
    return Recommendation(choice, best, tolerance, sorted(contenders, key=lambda g: g.cost_usd))


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def by_method(rows: Iterable[RunRow]) -> dict[str, list[RunRow]]:
    out: dict[str, list[RunRow]] = {}
    for row in rows:
        out.setdefault(row.method, []).append(row)
    return {m: out[m] for m in sorted(out, key=_method_rank)}


def _method_rank(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


@dataclass
class Effect:
    """Mean quality per value of one knob, per method."""

    method: str
    value: float | str
    rows: list[RunRow]

    @property
    def quality(self) -> float:
        return statistics.fmean(r.quality for r in self.rows)

    @property
    def low(self) -> float:
        return min(r.quality for r in self.rows)

    @property
    def high(self) -> float:
        return max(r.quality for r in self.rows)


def knob_effects(
    rows: Iterable[RunRow], knob: Callable[[RunRow], float | str | None]
) -> list[Effect]:
    cells: dict[tuple, list[RunRow]] = {}
    for row in rows:
        value = knob(row)
        if value is not None:
            cells.setdefault((row.method, value), []).append(row)
    return [
        Effect(m, v, rs)
        for (m, v), rs in sorted(cells.items(), key=lambda kv: (_method_rank(kv[0][0]), kv[0][1]))
    ]


def best_effect_per_method(effects: list[Effect]) -> dict[str, Effect]:
    best: dict[str, Effect] = {}
    for effect in effects:
        if effect.method not in best or effect.quality > best[effect.method].quality:
            best[effect.method] = effect
    return best


def distinct_values(effects: list[Effect]) -> int:
    return len({e.value for e in effects})


@dataclass
class PercentOfFull:
    group: ConfigGroup
    mean: float
    low: float
    high: float


def best_full_run(rows: Iterable[RunRow]) -> RunRow | None:
    full = [r for r in rows if r.usable and r.method == "full"]
    return max(full, key=lambda r: r.quality) if full else None


def percent_of_full(rows: list[RunRow]) -> list[PercentOfFull] | None:
    """Each LoRA-type configuration's quality as % of the best full run; None without a baseline."""
    baseline = best_full_run(rows)
    if baseline is None or baseline.quality <= 0:
        return None
    groups = group_by_config(r for r in rows if r.usable and r.is_lora)
    scale = 100.0 / baseline.quality
    out = [
        PercentOfFull(g, g.quality * scale, min(g.qualities) * scale, max(g.qualities) * scale)
        for g in groups
    ]
    return sorted(out, key=lambda p: (_method_rank(p.group.method), -p.mean))


def best_percent_per_method(percents: list[PercentOfFull] | None) -> dict[str, PercentOfFull]:
    best: dict[str, PercentOfFull] = {}
    for p in percents or []:
        if p.group.method not in best or p.mean > best[p.group.method].mean:
            best[p.group.method] = p
    return best


def percent_verdict(percent: float) -> str:
    low, high = GUIDE_PERCENT_OF_FULL
    if percent > high:
        return "above the guide's 95-99%"
    if percent >= low:
        return "inside the guide's 95-99%"
    return "below the guide's 95-99%"


# --- hardware and cost -----------------------------------------------------------------------


def load_hardware(name: str) -> HardwareConfig | None:
    """conf/hardware/NAME.yaml, or None when there is no such file."""
    import yaml

    path = CONF_DIR / "hardware" / f"{name}.yaml"
    if not path.exists():
        return None
    raw = yaml.safe_load(path.read_text()) or {}
    # YAML reads an unquoted 2026-11-28 as a date; the schema keeps it as text.
    raw["price_date"] = str(raw.get("price_date", ""))
    return HardwareConfig.model_validate(raw)


def hardware_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "hardware").glob("*.yaml"))


def price_age_days(hardware: HardwareConfig, today: dt.date) -> int | None:
    try:
        return (today - dt.date.fromisoformat(hardware.price_date)).days
    except ValueError:
        return None


def price_warnings(hardware: Iterable[HardwareConfig], today: dt.date) -> list[str]:
    warnings = []
    for hw in hardware:
        age = price_age_days(hw, today)
        if age is None:
            warnings.append(
                f"{hw.name}: price date {hw.price_date!r} is not a date (YYYY-MM-DD); check the price"
            )
        elif age > PRICE_MAX_AGE_DAYS:
            warnings.append(
                f"{hw.name}: price ${hw.price_per_device_hour}/device-hour is from {hw.price_date}, "
                f"{age} days old (older than {PRICE_MAX_AGE_DAYS}): check {hw.price_source}"
            )
    return warnings


def effective_tflops(hardware: HardwareConfig) -> float:
    # What a fine-tuning step reaches: peak x the share of it (mfu) the hardware file records.
    return hardware.peak_tflops * hardware.mfu


def projected_seconds(measured_s: float, measured_tflops: float, target_tflops: float) -> float:
    # The same work at another speed: time x (measured device's TFLOP/s / target's TFLOP/s).
    # Optimistic for small models, whose steps rarely reach a big GPU's usual share of peak.
    return measured_s * measured_tflops / target_tflops


@dataclass
class MethodCost:
    """One method's column of the guide's cost table, measured or projected."""

    method: str
    devices: str
    runs: int
    wall_time_s: float
    cost_usd: float
    storage_mb: float

    @property
    def experiments_per_dollar(self) -> float:
        return experiments_per_dollar(self.cost_usd)


def _device_label(hw: HardwareConfig | None, name: str) -> str:
    if hw is None:
        return f"{name} (not in conf/hardware)"
    return f"{hw.devices_per_trial}x {hw.name} at ${hw.price_per_device_hour:g}/h"


def measured_costs(rows: list[RunRow]) -> list[MethodCost]:
    out = []
    for method, runs in by_method(r for r in rows if r.usable).items():
        names = sorted({r.params.get("hardware", "?") for r in runs})
        out.append(
            MethodCost(
                method=method,
                devices="; ".join(_device_label(load_hardware(n), n) for n in names),
                runs=len(runs),
                wall_time_s=statistics.fmean(r.wall_time_s for r in runs),
                cost_usd=statistics.fmean(r.cost_usd for r in runs),
                storage_mb=statistics.fmean(r.metrics.get("artifact_mb", math.nan) for r in runs),
            )
        )
    return out


def projected_costs(
    rows: list[RunRow], target: HardwareConfig
) -> tuple[list[MethodCost], list[str]]:
    """Each method's runs rescaled to the target device; notes name runs that cannot be."""
    out, notes = [], []
    for method, runs in by_method(r for r in rows if r.usable).items():
        seconds = []
        for row in runs:
            measured = load_hardware(row.params.get("hardware", ""))
            if measured is None:
                notes.append(
                    f"{row.name}: hardware {row.params.get('hardware')!r} not in conf/hardware, not projected"
                )
                continue
            seconds.append(
                projected_seconds(
                    row.wall_time_s, effective_tflops(measured), effective_tflops(target)
                )
            )
        if not seconds:
            continue
        wall = statistics.fmean(seconds)
        out.append(
            MethodCost(
                method=method,
                devices=_device_label(target, target.name),
                runs=len(seconds),
                wall_time_s=wall,
                cost_usd=run_cost_usd(wall, target),
                storage_mb=statistics.fmean(r.metrics.get("artifact_mb", math.nan) for r in runs),
            )
        )
    return out, notes


def gain_over_full(costs: list[MethodCost]) -> dict[str, float]:
    """Experiments per dollar of each method divided by full fine-tuning's."""
    full = next((c for c in costs if c.method == "full"), None)
    if full is None:
        return {}
    return {c.method: c.experiments_per_dollar / full.experiments_per_dollar for c in costs}


# --- the report ------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Everything the sections are written from, computed once."""

    experiment: str
    tracking_uri: str
    rows: list[RunRow]
    usable: list[RunRow]
    left_out: list[RunRow]
    groups: list[ConfigGroup]
    recommendation: Recommendation | None
    front: list[RunRow]
    percents: list[PercentOfFull] | None
    costs: list[MethodCost]
    target: HardwareConfig | None
    projected: list[MethodCost]
    projection_notes: list[str]
    price_warnings: list[str]
    today: dt.date
    effects: dict[str, list[Effect]]  # knob name -> quality per value, per method
    baseline: RunRow | None = None  # the untrained base model on the same task


@dataclass(frozen=True)
class Lift:
    """A method's quality over the untrained base model's, and what it forgot meanwhile."""

    method: str
    runs: int
    best_quality: float
    lift: float  # best quality - base quality
    mean_forgetting: float  # nats on general text; positive = worse than the base


def lift_over_base(usable: list[RunRow], baseline: RunRow | None) -> list[Lift]:
    if baseline is None or not math.isfinite(baseline.quality):
        return []
    return [
        Lift(
            method=method,
            runs=len(runs),
            best_quality=max(r.quality for r in runs),
            lift=max(r.quality for r in runs) - baseline.quality,
            mean_forgetting=_mean_finite(r.metrics.get("forgetting", math.nan) for r in runs),
        )
        for method, runs in by_method(usable).items()
    ]


def _mean_finite(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


KNOBS: dict[str, Callable[[RunRow], float | str | None]] = {
    "rank": lambda r: r.lora_r,
    "learning_rate": lambda r: r.learning_rate,
    "alpha_ratio": lambda r: round(r.alpha_ratio, 3) if r.alpha_ratio is not None else None,
    "targets": lambda r: r.targets,
}


def analyse(
    tracking_uri: str, experiment: str, target_gpu: str | None = None, today: dt.date | None = None
) -> Analysis:
    today = today or dt.date.today()
    rows = load_rows(tracking_uri, experiment)
    # The base model's run is the bar runs are measured against, not a candidate itself.
    baselines = [r for r in rows if r.method == BASELINE_METHOD and r.usable]
    rows = [r for r in rows if r.method != BASELINE_METHOD]
    target = None
    if target_gpu:
        target = load_hardware(target_gpu)
        if target is None:
            raise ConfigError(
                f"target={target_gpu}: no such hardware (allowed: {', '.join(hardware_names())})"
            )
    usable = [r for r in rows if r.usable]
    measured_hw = [
        hw
        for n in sorted({r.params.get("hardware", "") for r in usable})
        if (hw := load_hardware(n))
    ]
    projected, notes = projected_costs(rows, target) if target else ([], [])
    return Analysis(
        experiment=experiment,
        tracking_uri=tracking_uri,
        rows=rows,
        usable=usable,
        left_out=[r for r in rows if not r.usable],
        groups=group_by_config(usable),
        recommendation=recommend(rows),
        front=pareto_front(usable),
        percents=percent_of_full(rows),
        costs=measured_costs(rows),
        target=target,
        projected=projected,
        projection_notes=notes,
        price_warnings=price_warnings([*measured_hw, *([target] if target else [])], today),
        today=today,
        effects={name: knob_effects(usable, knob) for name, knob in KNOBS.items()},
        baseline=baselines[-1] if baselines else None,
    )


def write_report(
    tracking_uri: str, experiment: str, out_dir: Path, target_gpu: str | None = None
) -> Path:
    """Write report.md, report.html and plots/*.png for one sweep; returns the report.md path."""
    from ftsweep.report.plots import draw_all
    from ftsweep.report.sections import build_document

    analysis = analyse(tracking_uri, experiment, target_gpu)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = draw_all(analysis, out_dir / "plots")
    document = build_document(
        analysis, {name: f"plots/{path.name}" for name, path in figures.items()}
    )
    (out_dir / "report.html").write_text(document.to_html())
    markdown = out_dir / "report.md"
    markdown.write_text(document.to_markdown())
    return markdown
