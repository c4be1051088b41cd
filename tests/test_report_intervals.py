"""ftsweep.data.intervals: percentile bootstrap intervals of a mean, of a paired difference, and
of the two-level (examples shared, seeds resampled) pooled mean and difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftsweep.data.intervals import (
    Interval,
    as_scores,
    mean_interval,
    paired_difference,
    shared_ids,
    two_level_interval,
)


def scores(values, prefix="e"):
    return {f"{prefix}{i}": float(v) for i, v in enumerate(values)}


def test_mean_interval_holds_the_mean_and_is_seeded():
    values = [1.0] * 30 + [0.0] * 2
    got = mean_interval(values)
    assert got.estimate == pytest.approx(30 / 32) and got.n == 32
    assert got.low < got.estimate <= got.high <= 1.0
    assert mean_interval(values) == got  # the default seed: the same every time
    smooth = np.linspace(0, 1, 41) ** 2  # continuous scores: the seed shows in the ends
    assert mean_interval(smooth, seed=1) == mean_interval(smooth, seed=1)
    assert mean_interval(smooth, seed=1) != mean_interval(smooth, seed=2)
    low, high = got  # unpacks as (low, high)
    assert (low, high) == (got.low, got.high)


def test_one_example_is_worth_a_wide_interval_and_more_examples_narrow_it():
    small = mean_interval([1.0] * 16 + [0.0] * 16)
    large = mean_interval([1.0] * 1600 + [0.0] * 1600)
    # Binomial standard error at p = 0.5: 0.088 at n=32, 0.0088 at n=3200; 95% is about +-1.96 se.
    assert small.width == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(32), rel=0.2)
    assert large.width == pytest.approx(small.width / 10, rel=0.2)


def test_the_interval_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = sum(
        mean_interval(rng.binomial(1, 0.7, 60).astype(float), resamples=1000, seed=k).contains(0.7)
        for k in range(300)
    )
    assert 0.90 <= hits / 300 <= 0.99


def test_a_constant_score_has_a_zero_width_interval():
    assert mean_interval([1.0] * 32) == Interval(1.0, 1.0, 1.0, 32)


def test_paired_difference_pairs_examples_by_id():
    base = [1.0] * 30 + [0.0] * 2
    a = scores(base)
    b = scores(base[:29] + [0.0] * 3)  # the same as a, but one example lost
    d = paired_difference(a, b)
    assert d.estimate == pytest.approx(1 / 32)
    assert d.contains(0.0)  # one example out of 32 is noise
    # Paired, the interval is far narrower than the unpaired (independent) normal one.
    unpaired_half = 1.96 * math.hypot(*(math.sqrt(p * (1 - p) / 32) for p in (30 / 32, 29 / 32)))
    assert d.width < unpaired_half
    # The order of ids does not matter, only which example each score belongs to.
    assert paired_difference(dict(reversed(list(a.items()))), b) == d
    # Sixteen lost examples are beyond noise.
    assert paired_difference(a, scores(base[:14] + [0.0] * 18)).above_zero


def test_paired_difference_uses_shared_ids_only_and_needs_some():
    a = {"x": 1.0, "y": 1.0, "z": 0.0}
    b = {"y": 0.0, "z": 0.0, "w": 1.0}
    assert shared_ids([a, b]) == ["y", "z"]
    assert paired_difference(a, b).n == 2
    with pytest.raises(ValueError, match="share no example id"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def test_two_level_resamples_seeds_where_a_configuration_has_several():
    one = scores([1.0] * 24 + [0.0] * 8)
    other_seed = scores([1.0] * 8 + [0.0] * 24)  # the same configuration, a very different seed
    single = two_level_interval([one])
    pooled = two_level_interval([one, other_seed])
    assert pooled.estimate == pytest.approx((24 + 8) / 64) and pooled.seeds == 2
    assert pooled.width > single.width  # the seeds' disagreement widens it
    # Two identical seeds add nothing the examples did not already say.
    same = two_level_interval([one, one])
    assert same.estimate == single.estimate and same.width == pytest.approx(single.width, abs=0.03)


def test_two_level_difference_reduces_to_the_paired_one_with_one_seed_each():
    a, b = scores([1.0] * 28 + [0.0] * 4), scores([1.0] * 20 + [0.0] * 12)
    assert two_level_interval([a], [b]) == paired_difference(a, b)
    spread = two_level_interval([a, b], [b])
    assert spread.estimate == pytest.approx((28 + 20) / 64 - 20 / 32)
    assert spread.contains(0.0)  # one seed of a is no better than b


def test_ratio_of_means_is_paired_and_unbounded_over_a_zero():
    full = scores([1.0] * 1600 + [0.0] * 400)
    lora = scores([1.0] * 1552 + [0.0] * 448)  # 97% of full, on a subset of its examples
    ratio = two_level_interval([lora], [full], statistic="ratio")
    assert ratio.estimate == pytest.approx(0.97)
    assert 0.95 < ratio.low < 0.97 < ratio.high < 0.99
    zero = two_level_interval([lora], [scores([0.0] * 2000)], statistic="ratio")
    assert math.isinf(zero.estimate) and math.isinf(zero.high)


def test_as_scores_checks_what_it_pairs():
    assert as_scores(["a", "b"], [1, 0.5]) == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError, match="2 ids but 1 scores"):
        as_scores(["a", "b"], [1])
    with pytest.raises(ValueError, match="appears twice"):
        as_scores(["a", "a"], [1, 0])
    with pytest.raises(ValueError, match="outside"):
        as_scores(["a"], [float("nan")])
    with pytest.raises(ValueError, match="no scores"):
        mean_interval([])


def test_large_score_sets_are_bootstrapped_in_bounded_batches():
    values = np.random.default_rng(0).random(20_000)
    got = mean_interval(values, resamples=500)
    assert got.contains(values.mean()) and got.width < 0.02
