"""Verdicts and what every claim's evidence is built from: the three verdicts, a
range checked at both ends, the ceiling and floor, and whether a learning rate was tuned."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, Effect
from ftsweep.report.evidence import Comparison, ConfigGroup, Estimate
from ftsweep.report.methods import adapter_method
from ftsweep.report.render import (
    Table,
    fmt_diff,
    fmt_estimate,
    fmt_quality,
)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_TESTABLE = "not testable"
# Runs that show a learning rate was tried, though they have no quality: a scheduler stopped
# them as worse, or they diverged.
TRIED_STOPS = ("early_stopped", "diverged")


@dataclass
class Claim:
    text: str
    verdict: str
    reason: str
    evidence: Table | None = None


def range_verdict(low: float, high: float, lo: float, hi: float) -> str:
    """Both ends: inside [lo, hi] supported, entirely outside contradicted, else undecided."""
    if math.isnan(low) or math.isnan(high):
        return NOT_TESTABLE
    if lo <= low and high <= hi:
        return SUPPORTED
    if high < lo or low > hi:
        return CONTRADICTED
    return NOT_TESTABLE


def flat_reason(a: Analysis) -> str | None:
    if a.flat:
        return (
            f"every run scored the same quality ({fmt_quality(a.usable[0].quality)}): "
            "the task does not separate the configurations"
        )
    return None


def limit_reason(estimates: list[tuple[str, Estimate]]) -> str | None:
    """Why quality cannot show a difference here: every configuration compared at the ceiling
    (or every one at the floor)."""
    if estimates and all(e.at_ceiling() for _, e in estimates):
        names = " and ".join(n for n, _ in estimates)
        return f"quality at the ceiling ({names} score every example right): a harder task is needed to tell them apart"
    if estimates and all(e.at_floor() for _, e in estimates):
        names = " and ".join(n for n, _ in estimates)
        return f"quality at the floor ({names} score nothing): nothing was learned to compare"
    return None


def est_text(e: Estimate) -> str:
    return fmt_estimate(e.value, e.low, e.high)


def cmp_text(c: Comparison) -> str:
    return fmt_diff(c.value, c.low, c.high)


def config_text(g: ConfigGroup) -> str:
    seeds = f", {g.n} seeds" if g.n > 1 else ""
    return f"{method_label(g.method)} ({g.knobs}{seeds})"


# --- is the learning rate tuned where a comparison is made? ----------------------------------


@dataclass
class LearningRates:
    """The learning rates tried at one setting (a configuration but for its rate)."""

    setting: ConfigGroup  # the best configuration at this setting
    tried: list[float]
    tied: list[float]  # rates whose configuration is not significantly below the best
    flat: bool  # every rate tried is tied with the best

    @property
    def best(self) -> float | None:
        return self.setting.first.learning_rate

    def untuned(self) -> str | None:
        """Why this setting's learning rate does not count as tuned, or None."""
        name = config_text(self.setting)
        tried = ", ".join(f"{lr:.0e}" for lr in self.tried) or "none recorded"
        if len(self.tried) < 3:
            return f"{name}: learning rate not tuned at this setting (tried {tried}; three or more are needed)"
        if self.best in (self.tried[0], self.tried[-1]):
            return (
                f"{name}: its best learning rate {self.best:.0e} is at the edge of those tried "
                f"({tried}): a better one may lie beyond"
            )
        return None


def learning_rates(a: Analysis, group: ConfigGroup) -> LearningRates:
    key = group.first.setting_key
    same = [g for g in a.groups if g.first.setting_key == key]
    tried_rows = [
        r for r in a.rows if r.setting_key == key and (r.usable or r.stop_reason in TRIED_STOPS)
    ]
    tried = sorted({r.learning_rate for r in tried_rows if r.learning_rate is not None})
    best = max(same, key=lambda g: a.estimate(g).value)
    tied = sorted(
        {
            g.first.learning_rate
            for g in same
            if g.first.learning_rate is not None
            and (g is best or a.evidence.difference(best, g).tie)
        }
    )
    usable_rates = {g.first.learning_rate for g in same}
    return LearningRates(best, tried, tied, len(same) > 1 and set(tied) >= usable_rates)


# --- the claims ------------------------------------------------------------------------------


def lora_method(a: Analysis) -> str | None:
    methods = {g.method for g in a.groups}
    return adapter_method(methods, quantized=False) or adapter_method(methods)


def best_group(a: Analysis, method: str) -> ConfigGroup | None:
    mine = [g for g in a.groups if g.method == method]
    return max(mine, key=lambda g: a.estimate(g).value) if mine else None


def quality_row(a: Analysis, g: ConfigGroup, *extra: str) -> list[str]:
    lr = learning_rates(a, g)
    tuned = lr.untuned()
    return [
        config_text(g),
        est_text(a.estimate(g)),
        ", ".join(f"{x:.0e}" for x in lr.tried) or "?",
        "yes" if tuned is None else "no",
        *extra,
    ]


def untestable_comparison(
    a: Analysis, text: str, measured: str, table, diff: Comparison, pair: list[tuple[str, Effect]]
) -> Claim | None:
    """The not-testable verdict on comparing two knob values' best configurations, or None when
    they can be compared: quality flat or at a limit, a learning rate not tuned, no interval."""
    reasons = [
        flat_reason(a),
        limit_reason([(name, effect.estimate) for name, effect in pair]),
        *(learning_rates(a, effect.best).untuned() for _, effect in pair),
    ]
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    if not diff.known:
        return Claim(text, NOT_TESTABLE, f"{measured}: no interval ({diff.how})", table)
    return None
