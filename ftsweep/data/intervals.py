"""Percentile bootstrap intervals for scores over examples: pure statistics, numpy only.

A run's quality is the mean of per-example scores; these functions say how far that mean could
move had other examples (and, where a configuration ran with several seeds, other seeds) been
drawn:

- `mean_interval(scores)`: the interval of one mean over examples (what a trial logs as
  `quality_ci_low` / `quality_ci_high`);
- `paired_difference(a, b)`: the interval of mean(a) - mean(b) over the example ids both scored,
  resampling those examples together, so what is hard for one is hard for the other;
- `two_level_interval(a, b=None)`: one configuration's runs (one per seed) pooled, or two
  configurations compared: examples are resampled once per replicate and shared by every run
  (pairing), and seeds are resampled with replacement within each configuration that has several.
  With one run on each side it is `paired_difference`; `statistic="ratio"` gives mean(a) / mean(b);
- `ratio_of_sums(numerators, denominators)`: sum(numerators) / sum(denominators) over units drawn
  together, such as a token-weighted mean loss over text windows (each window's summed loss over
  its token count), or a paired difference of two when the numerators are differences.

Scores are mappings from a stable example id to a score in [0, 1] (`as_scores` builds one from
parallel lists). Every function is deterministic for a given `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
_CELLS = 1_000_000  # replicates x examples drawn per batch: bounds the memory one batch takes

Scores = Mapping[str, float]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval.

    `n` is the number of examples it rests on, `seeds` the number of runs pooled on the side
    with most (1 for a single run); `low <= estimate <= high` need not hold exactly for ratios.
    """

    estimate: float
    low: float
    high: float
    n: int
    seeds: int = 1
    level: float = LEVEL

    def __iter__(self):
        """Unpacks as `low, high = interval`."""
        return iter((self.low, self.high))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        return not self.contains(0.0)

    @property
    def above_zero(self) -> bool:
        """The whole interval is above 0: a difference beyond noise, in favour of the first."""
        return self.low > 0.0

    @property
    def below_zero(self) -> bool:
        return self.high < 0.0

    @property
    def width(self) -> float:
        return self.high - self.low

    def scaled(self, factor: float) -> Interval:
        """The same interval times a positive factor (a ratio as a percentage, say)."""
        return Interval(
            self.estimate * factor,
            self.low * factor,
            self.high * factor,
            self.n,
            self.seeds,
            self.level,
        )


def as_scores(ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """Parallel lists of example ids and scores as one mapping; ValueError when they do not pair
    up, an id repeats, or a score is outside [0, 1]."""
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    out: dict[str, float] = {}
    for key, value in zip(ids, scores, strict=True):
        key = str(key)
        if key in out:
            raise ValueError(f"example id {key!r} appears twice")
        value = float(value)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(f"score {value!r} of example {key!r} is outside [0, 1]")
        out[key] = value
    return out


def mean_interval(
    scores: Sequence[float] | np.ndarray,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean of the scores with its percentile bootstrap interval over examples."""
    matrix = np.asarray(scores, dtype=float).reshape(1, -1)
    if matrix.size == 0:
        raise ValueError("no scores: an interval needs at least one example")
    return _bootstrap([matrix], "mean", level, resamples, seed)


def paired_difference(
    a: Scores,
    b: Scores,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """mean(a) - mean(b) over the example ids both scored, with its paired bootstrap interval.
    ValueError when they share no example id."""
    return two_level_interval([a], [b], level=level, resamples=resamples, seed=seed)


def ratio_of_sums(
    numerators: Sequence[float] | np.ndarray,
    denominators: Sequence[float] | np.ndarray,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """sum(numerators) / sum(denominators), with its percentile bootstrap interval over units.

    Each replicate draws units (say, text windows) with replacement and recomputes the ratio of
    the drawn units' sums, so a unit's numerator and denominator stay together; `n` is the
    number of units. ValueError when the two do not pair up, there is no unit, or a denominator
    is not positive.
    """
    top = np.asarray(numerators, dtype=float).reshape(1, -1)
    bottom = np.asarray(denominators, dtype=float).reshape(1, -1)
    if top.shape != bottom.shape:
        raise ValueError(f"{top.size} numerators but {bottom.size} denominators")
    if top.size == 0:
        raise ValueError("no units: an interval needs at least one")
    if not (bottom > 0).all():
        raise ValueError("every denominator must be positive")
    # The mean of the drawn numerators over that of the drawn denominators is the ratio of sums.
    return _bootstrap([top, bottom], "ratio", level, resamples, seed)


def two_level_interval(
    a: Sequence[Scores],
    b: Sequence[Scores] | None = None,
    *,
    statistic: Literal["difference", "ratio"] = "difference",
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """One configuration pooled over its runs (b None), or a - b (or a / b) between two.

    `a` and `b` hold one score mapping per run (seed) of a configuration. Only the example ids
    that every run on both sides scored are used. Each replicate draws those examples with
    replacement once, shared by all runs (so the comparison stays paired), and within each side
    draws its runs with replacement when it has more than one; the statistic is the mean over
    the drawn runs of each run's mean over the drawn examples. ValueError when a side has no
    run or the runs share no example id.
    """
    sides = [a] if b is None else [a, b]
    if any(len(side) == 0 for side in sides):
        raise ValueError("each side needs at least one run's scores")
    ids = shared_ids(scores for side in sides for scores in side)
    if not ids:
        raise ValueError("the runs share no example id: nothing to pair")
    matrices = [np.array([[s[i] for i in ids] for s in side], dtype=float) for side in sides]
    kind = "mean" if b is None else statistic
    return _bootstrap(matrices, kind, level, resamples, seed)


def shared_ids(runs: Iterable[Scores]) -> list[str]:
    """The example ids every one of these runs scored, sorted (so results do not depend on the
    order a run listed them in)."""
    common: set[str] | None = None
    for scores in runs:
        common = set(scores) if common is None else common & set(scores)
    return sorted(common or ())


def _bootstrap(
    matrices: list[np.ndarray], kind: str, level: float, resamples: int, seed: int
) -> Interval:
    """Percentile interval of the statistic over replicates that resample the columns (examples,
    shared by every matrix) and, per matrix, its rows (runs) when it has several."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: must be between 0 and 1")
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: must be at least 1")
    n = matrices[0].shape[1]
    rng = np.random.default_rng(seed)
    estimate = _statistic(kind, [m.mean() for m in matrices])
    values = np.empty(resamples)
    chunk = max(1, min(resamples, _CELLS // n))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        drawn = rng.integers(0, n, size=(size, n))  # the examples of each replicate, shared
        means = []
        for matrix in matrices:
            per_run = matrix[:, drawn].mean(axis=2)  # (runs, size): each run's mean
            runs = matrix.shape[0]
            if runs > 1:
                picks = rng.integers(0, runs, size=(size, runs))  # seeds, with replacement
                means.append(np.take_along_axis(per_run.T, picks, axis=1).mean(axis=1))
            else:
                means.append(per_run[0])
        values[done : done + size] = _statistic(kind, means)
        done += size
    tail = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):  # inf - inf between unbounded ratios
        low, high = np.quantile(values, [tail, 1.0 - tail])
    return Interval(
        float(estimate),
        _finite_or_inf(low),
        _finite_or_inf(high),
        n,
        max(m.shape[0] for m in matrices),
        level,
    )


def _statistic(kind: str, means):
    if kind == "mean":
        return means[0]
    if kind == "difference":
        return np.subtract(means[0], means[1])
    if kind == "ratio":
        a, b = np.asarray(means[0], dtype=float), np.asarray(means[1], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A replicate whose denominator is 0 has no finite ratio: +inf (0/0 too), so the
            # interval says "unbounded" rather than dropping it.
            ratio = np.where(b > 0, a / np.where(b > 0, b, 1.0), np.inf)
        return ratio if ratio.ndim else float(ratio)
    raise ValueError(f"statistic={kind!r}: difference or ratio")


def _finite_or_inf(value: float) -> float:
    # np.quantile between inf and inf is nan; the interval is unbounded there.
    return math.inf if math.isnan(value) else float(value)
