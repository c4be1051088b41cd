"""How sure a quality is, and whether two differ beyond noise.

Runs of one configuration (they differ only in their seed) form a `ConfigGroup`. `Evidence`
gives each group's quality with its 95% interval (`Estimate`) and compares two groups
(`Comparison`), from the best evidence the runs recorded:

1. per-example scores (`scores/scores.json`) on every run involved: a two-level bootstrap
   (`ftsweep.data.intervals.two_level_interval`) that resamples the shared examples once per
   replicate, so comparisons are paired, and the seeds of a configuration with several;
2. else the intervals the runs logged (`quality_ci_low` / `_high`): a normal approximation,
   unpaired, so wider than it need be, and said so;
3. else nothing: the point estimates alone, and the report says no interval is known.

A difference is a tie when its interval includes 0, or when it is no larger than the spread
of quality between seeds of either configuration.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ftsweep.data.intervals import RESAMPLES, Interval, two_level_interval
from ftsweep.report.runs import RunRow
from ftsweep.report.scores import RunScores, ScoreSource

Z95 = 1.959964  # the normal quantile of a 95% two-sided interval

SCORES = "per-example scores"
LOGGED = "logged intervals"
UNKNOWN = "no interval recorded"


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
    def ids(self) -> tuple[str, ...]:
        return tuple(r.run_id for r in self.rows)

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
        """The mean of the runs' logged qualities (`Evidence.quality` is what decisions use)."""
        return statistics.fmean(self.qualities)

    @property
    def spread(self) -> float:
        return max(self.qualities) - min(self.qualities)

    @property
    def cost_usd(self) -> float:
        return statistics.fmean(r.cost_usd for r in self.rows)

    @property
    def wall_time_s(self) -> float:
        return statistics.fmean(r.wall_time_s for r in self.rows)

    @property
    def best_run(self) -> RunRow:
        return max(self.rows, key=lambda r: (r.quality, -r.cost_usd))


def group_by_config(rows: Iterable[RunRow]) -> list[ConfigGroup]:
    groups: dict[tuple, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.config_key, []).append(row)
    return [ConfigGroup(g) for g in groups.values()]


@dataclass(frozen=True)
class Estimate:
    """A configuration's quality (the mean over its seeds) with its 95% interval, or None where
    its runs recorded none; `source` says where the interval comes from."""

    value: float
    interval: Interval | None
    source: str
    runs: int
    examples: int | None

    @property
    def low(self) -> float:
        return self.interval.low if self.interval else math.nan

    @property
    def high(self) -> float:
        return self.interval.high if self.interval else math.nan

    def at_ceiling(self) -> bool:
        """Every example scored full marks (up to rounding): better cannot be measured."""
        return self.value >= 1.0 - _edge(self.examples)

    def at_floor(self) -> bool:
        return self.value <= _edge(self.examples)


def _edge(examples: int | None) -> float:
    # Half an example's worth: below it, no example moved.
    return 0.5 / examples if examples else 0.005


@dataclass(frozen=True)
class Comparison:
    """a - b (or a / b): the estimate, its 95% interval (None when unknown) and how it was got."""

    value: float
    interval: Interval | None
    how: str
    seed_spread: float | None = None  # the wider seed spread of the two, where either has seeds
    paired: bool = False

    @property
    def low(self) -> float:
        return self.interval.low if self.interval else math.nan

    @property
    def high(self) -> float:
        return self.interval.high if self.interval else math.nan

    @property
    def known(self) -> bool:
        return self.interval is not None

    @property
    def tie(self) -> bool:
        """Inside the noise: the interval includes 0, or the difference is no larger than the
        seeds' own spread. With no interval, only an exact tie is one."""
        if self.seed_spread is not None and abs(self.value) <= self.seed_spread + 1e-12:
            return True
        if self.interval is None:
            return abs(self.value) <= 1e-12
        return self.interval.contains(0.0)

    @property
    def positive(self) -> bool:
        """a is above b beyond noise."""
        return self.value > 0 and not self.tie

    @property
    def negative(self) -> bool:
        return self.value < 0 and not self.tie


class Evidence:
    """Estimates and comparisons of configuration groups, each computed once."""

    def __init__(self, source: ScoreSource | None = None, resamples: int = RESAMPLES):
        self.source = source or ScoreSource()
        self.resamples = resamples
        self._estimates: dict[tuple, Estimate] = {}
        self._comparisons: dict[tuple, Comparison] = {}

    # --- per run ---------------------------------------------------------------------------

    def scores(self, row: RunRow) -> RunScores | None:
        return self.source.scores(row)

    def why_no_scores(self, row: RunRow) -> str | None:
        return self.source.why_none(row)

    def _all_scores(self, group: ConfigGroup) -> list[RunScores] | None:
        found = [self.scores(r) for r in group.rows]
        return None if any(s is None for s in found) else found

    # --- one group -------------------------------------------------------------------------

    def quality(self, group: ConfigGroup) -> Estimate:
        key = ("quality", group.ids)
        if key not in self._estimates:
            self._estimates[key] = self._quality(group, "validation")
        return self._estimates[key]

    def test_quality(self, group: ConfigGroup) -> Estimate:
        """Quality on the test split: quoted for a chosen configuration, never used to choose."""
        key = ("test", group.ids)
        if key not in self._estimates:
            self._estimates[key] = self._quality(group, "test")
        return self._estimates[key]

    def _quality(self, group: ConfigGroup, split: str) -> Estimate:
        prefix = "" if split == "validation" else "test_"
        values = [r.metrics.get(f"{prefix}quality", math.nan) for r in group.rows]
        scores = self._all_scores(group)
        if scores is not None and all(getattr(s, split) for s in scores):
            try:
                interval = two_level_interval(
                    [getattr(s, split) for s in scores], resamples=self.resamples
                )
            except ValueError:
                interval = None
            if interval is not None:
                return Estimate(interval.estimate, interval, SCORES, group.n, interval.n)
        finite = [v for v in values if math.isfinite(v)]
        value = statistics.fmean(finite) if len(finite) == len(values) and finite else math.nan
        interval = self._logged(group, prefix, value)
        examples = _examples(group, prefix)
        return Estimate(value, interval, LOGGED if interval else UNKNOWN, group.n, examples)

    @staticmethod
    def _logged(group: ConfigGroup, prefix: str, value: float) -> Interval | None:
        """The logged intervals pooled by a normal approximation: the examples' part of the
        variance (shared by every seed, so not divided by their number) plus the seeds'."""
        logged = [r.logged_interval(prefix) for r in group.rows]
        if not math.isfinite(value) or any(x is None for x in logged):
            return None
        if group.n == 1:
            low, high = logged[0]
            return Interval(value, low, high, _examples(group, prefix) or 0, 1)
        example_var = statistics.fmean(((h - lo) / (2 * Z95)) ** 2 for lo, h in logged)
        values = [r.metrics.get(f"{prefix}quality", math.nan) for r in group.rows]
        se = math.sqrt(example_var + statistics.variance(values) / group.n)
        return Interval(
            value,
            max(0.0, value - Z95 * se),
            min(1.0, value + Z95 * se),
            _examples(group, prefix) or 0,
            group.n,
        )

    # --- two groups ------------------------------------------------------------------------

    def difference(self, a: ConfigGroup, b: ConfigGroup) -> Comparison:
        """a - b in validation quality."""
        return self._compare(a, b, "difference")

    def ratio(self, a: ConfigGroup, b: ConfigGroup) -> Comparison:
        """a / b in validation quality (inf where b's is 0)."""
        return self._compare(a, b, "ratio")

    def _compare(self, a: ConfigGroup, b: ConfigGroup, statistic: str) -> Comparison:
        key = (statistic, a.ids, b.ids)
        if key not in self._comparisons:
            self._comparisons[key] = self._compute(a, b, statistic)
        return self._comparisons[key]

    def _compute(self, a: ConfigGroup, b: ConfigGroup, statistic: str) -> Comparison:
        spreads = [g.spread for g in (a, b) if g.n > 1]
        spread = max(spreads) if spreads and statistic == "difference" else None
        sa, sb = self._all_scores(a), self._all_scores(b)
        if sa is not None and sb is not None:
            try:
                interval = two_level_interval(
                    [s.validation for s in sa],
                    [s.validation for s in sb],
                    statistic=statistic,
                    resamples=self.resamples,
                )
            except ValueError:
                interval = None  # no shared example ids: fall back below
            if interval is not None:
                seeds = f" and seeds ({a.n} and {b.n})" if max(a.n, b.n) > 1 else ""
                how = f"paired over {interval.n} examples{seeds}"
                return Comparison(interval.estimate, interval, how, spread, paired=True)
        ea, eb = self.quality(a), self.quality(b)
        value = _combine(statistic, ea.value, eb.value)
        why = "no per-example scores" if sa is None or sb is None else "no shared example ids"
        if ea.interval is None or eb.interval is None:
            return Comparison(value, None, "point estimates only: no interval recorded", spread)
        se_a, se_b = _se(ea.interval), _se(eb.interval)
        if statistic == "difference":
            se = math.hypot(se_a, se_b)
        elif ea.value > 0 and eb.value > 0:
            se = abs(value) * math.hypot(se_a / ea.value, se_b / eb.value)  # the delta method
        else:
            return Comparison(value, None, f"a ratio with a zero quality has no interval ({why})")
        n = min(ea.interval.n, eb.interval.n)
        interval = Interval(value, value - Z95 * se, value + Z95 * se, n, max(a.n, b.n))
        return Comparison(value, interval, f"unpaired, from logged intervals ({why})", spread)


def _combine(statistic: str, a: float, b: float) -> float:
    if statistic == "difference":
        return a - b
    return a / b if b > 0 else math.inf


def _se(interval: Interval) -> float:
    return (interval.high - interval.low) / (2 * Z95)


def _examples(group: ConfigGroup, prefix: str) -> int | None:
    key = "num_eval_examples" if prefix == "" else "num_test_examples"
    counts = {r.metrics.get(key) for r in group.rows}
    counts.discard(None)
    return int(min(counts)) if counts and all(math.isfinite(c) for c in counts) else None
