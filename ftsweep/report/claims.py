"""The vendor guide's claims, each set against what the sweep measured, with the evidence.

Every claim gets one verdict:

- **supported**: the measurement's 95% interval lies inside what the guide claims;
- **contradicted**: it lies entirely outside;
- **not testable**, with the reason: the interval reaches both sides of an end of the claim,
  quality is at the ceiling or the floor (or the same for every run), the knob was not varied,
  its learning rate was not tuned at each setting compared (three or more rates, the best not
  at the edge of those tried), or the sweep lacks a method the claim compares.

A range claim is checked at both ends (95-99% of full fine-tuning: inside [95, 99] is
supported, entirely below 95 or above 99 contradicted). A claim that a knob value is enough
("r=8 captures style") is supported when its quality is below the best value's by no more than
5% of it (the guide's own bar for comparable quality) and contradicted when it is below by more.
Learning rates are compared through the rates tied with each method's best (not significantly
below it), so a flat response, where any rate would do, proves nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, Effect
from ftsweep.report.costs import MethodCost
from ftsweep.report.evidence import Comparison, ConfigGroup, Estimate
from ftsweep.report.guide import (
    GUIDE_COMPARABLE_SHARE,
    GUIDE_EPD_GAIN,
    GUIDE_LR_RATIO_RANGE,
    GUIDE_PERCENT_OF_FULL,
    GUIDE_STORAGE_RATIO,
)
from ftsweep.report.methods import adapter_method, full_method, is_adapter
from ftsweep.report.render import (
    Block,
    Section,
    Table,
    fmt_diff,
    fmt_estimate,
    fmt_mb,
    fmt_percent_interval,
    fmt_quality,
    fmt_ratio,
    fmt_usd,
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


def _range_verdict(low: float, high: float, lo: float, hi: float) -> str:
    """Both ends: inside [lo, hi] supported, entirely outside contradicted, else undecided."""
    if math.isnan(low) or math.isnan(high):
        return NOT_TESTABLE
    if lo <= low and high <= hi:
        return SUPPORTED
    if high < lo or low > hi:
        return CONTRADICTED
    return NOT_TESTABLE


def _flat_reason(a: Analysis) -> str | None:
    if a.flat:
        return (
            f"every run scored the same quality ({fmt_quality(a.usable[0].quality)}): "
            "the task does not separate the configurations"
        )
    return None


def _limit_reason(estimates: list[tuple[str, Estimate]]) -> str | None:
    """Why quality cannot show a difference here: every configuration compared at the ceiling
    (or every one at the floor)."""
    if estimates and all(e.at_ceiling() for _, e in estimates):
        names = " and ".join(n for n, _ in estimates)
        return f"quality at the ceiling ({names} score every example right): a harder task is needed to tell them apart"
    if estimates and all(e.at_floor() for _, e in estimates):
        names = " and ".join(n for n, _ in estimates)
        return f"quality at the floor ({names} score nothing): nothing was learned to compare"
    return None


def _est_text(e: Estimate) -> str:
    return fmt_estimate(e.value, e.low, e.high)


def _cmp_text(c: Comparison) -> str:
    return fmt_diff(c.value, c.low, c.high)


def _config_text(g: ConfigGroup) -> str:
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
        name = _config_text(self.setting)
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


def _lora(a: Analysis) -> str | None:
    methods = {g.method for g in a.groups}
    return adapter_method(methods, quantized=False) or adapter_method(methods)


def _best(a: Analysis, method: str) -> ConfigGroup | None:
    mine = [g for g in a.groups if g.method == method]
    return max(mine, key=lambda g: a.estimate(g).value) if mine else None


def _quality_row(a: Analysis, g: ConfigGroup, *extra: str) -> list[str]:
    lr = learning_rates(a, g)
    tuned = lr.untuned()
    return [
        _config_text(g),
        _est_text(a.estimate(g)),
        ", ".join(f"{x:.0e}" for x in lr.tried) or "?",
        "yes" if tuned is None else "no",
        *extra,
    ]


def claim_percent(a: Analysis) -> Claim:
    text = "LoRA reaches 95-99% of full fine-tuning quality"
    full_name, lora_name = full_method({g.method for g in a.groups}), _lora(a)
    if full_name is None or lora_name is None:
        return Claim(
            text, NOT_TESTABLE, "needs full fine-tuning and LoRA-type runs on the same inputs"
        )
    full, lora = _best(a, full_name), _best(a, lora_name)
    lo, hi = GUIDE_PERCENT_OF_FULL
    rows = []
    for method in dict.fromkeys([lora_name, *(g.method for g in a.groups if is_adapter(g.method))]):
        g = _best(a, method)
        c = a.evidence.ratio(g, full)
        rows.append(
            _quality_row(
                a, g, fmt_percent_interval(c.value * 100, c.low * 100, c.high * 100), c.how
            )
        )
    rows.append(_quality_row(a, full, "100% (the reference)", ""))
    table = Table(
        [
            "configuration (best of its method)",
            "quality [95% interval]",
            "learning rates tried",
            "learning rate tuned",
            "% of full [95% interval]",
            "compared",
        ],
        rows,
    )
    c = a.evidence.ratio(lora, full)
    low, high = c.low * 100, c.high * 100
    measured = f"{method_label(lora_name)} at {fmt_percent_interval(c.value * 100, low, high)} of full fine-tuning"
    fe = a.estimate(full)
    reasons = [
        _flat_reason(a),
        "full fine-tuning's best quality is 0: a share of it is undefined"
        if not fe.value > 0
        else None,
    ]
    if fe.at_ceiling() and not (c.known and high < lo):
        # A higher ceiling could only lower the share: only "below 95%" would stand.
        reasons.append(
            f"full fine-tuning is at the ceiling ({_est_text(fe)}): how far above {method_label(lora_name)} it would go cannot be measured"
        )
    if fe.at_floor():
        reasons.append(f"full fine-tuning is at the floor ({_est_text(fe)})")
    reasons += [learning_rates(a, g).untuned() for g in (full, lora)]
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    if not c.known:
        return Claim(text, NOT_TESTABLE, f"{measured}: no interval ({c.how})", table)
    verdict = _range_verdict(low, high, lo, hi)
    if verdict == NOT_TESTABLE:
        return Claim(
            text,
            verdict,
            f"{measured}: the interval reaches across an end of 95-99%, so the sweep cannot tell (more examples or seeds narrow it)",
            table,
        )
    where = "inside 95-99%" if verdict == SUPPORTED else ("below 95%" if high < lo else "above 99%")
    return Claim(text, verdict, f"{measured}: the whole interval is {where}", table)


def _value_claim(
    a: Analysis,
    text: str,
    knob: str,
    value: float | str,
    show: Callable[[float | str], str],
) -> Claim:
    """Is the guide's value of a knob not below the best value tried by more than the margin?"""
    method = _lora(a)
    effects = [e for e in a.effects[knob] if e.method == method]
    name = f"{show(value)}"
    at = next((e for e in effects if e.value == value), None)
    tried = ", ".join(show(e.value) for e in effects) or "none"
    if method is None or len({e.value for e in effects}) < 2:
        return Claim(text, NOT_TESTABLE, f"the knob was not varied (tried: {tried})")
    if at is None:
        return Claim(text, NOT_TESTABLE, f"{name} was not tried (tried: {tried})")
    others = [e for e in effects if e is not at]
    rival = max(others, key=lambda e: e.quality)  # the best value but the guide's
    diff = a.evidence.difference(rival.best, at.best)  # rival - the guide's value
    margin = GUIDE_COMPARABLE_SHARE * a.estimate(rival.best).value
    table = _effects_table(a, effects, at, show)
    measured = f"{name}: {_est_text(at.estimate)}; best other, {show(rival.value)}: {_est_text(rival.estimate)}; difference {_cmp_text(diff)}"
    reasons = [
        _flat_reason(a),
        _limit_reason([(show(at.value), at.estimate), (show(rival.value), rival.estimate)]),
        learning_rates(a, at.best).untuned(),
        learning_rates(a, rival.best).untuned(),
    ]
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    if not diff.known:
        return Claim(text, NOT_TESTABLE, f"{measured}: no interval ({diff.how})", table)
    bar = f"{margin:.3f} (5% of {fmt_quality(a.estimate(rival.best).value)})"
    if diff.high <= margin:
        return Claim(text, SUPPORTED, f"{measured}: it is below the best by at most {bar}", table)
    if diff.low > margin:
        return Claim(
            text, CONTRADICTED, f"{measured}: it is below the best by more than {bar}", table
        )
    return Claim(
        text,
        NOT_TESTABLE,
        f"{measured}: the interval reaches both sides of {bar}, so the sweep cannot tell",
        table,
    )


def _effects_table(a: Analysis, effects: list[Effect], at: Effect, show) -> Table:
    rows = []
    for e in effects:
        lr = learning_rates(a, e.best)
        rows.append(
            [
                show(e.value) + (" (the guide's)" if e is at else ""),
                e.best.knobs,
                str(len(e.groups)),
                ", ".join(f"{x:.0e}" for x in lr.tried) or "?",
                "yes" if lr.untuned() is None else "no",
                _est_text(e.estimate),
            ]
        )
    return Table(
        [
            "value",
            "best configuration at it",
            "configurations",
            "learning rates tried",
            "learning rate tuned",
            "quality [95% interval]",
        ],
        rows,
    )


def claim_rank(a: Analysis) -> Claim:
    return _value_claim(a, "r=8 captures style and format", "rank", 8, lambda v: f"r={v}")


def claim_alpha(a: Analysis) -> Claim:
    return _value_claim(
        a, "alpha = 2 x rank is a good start", "alpha_ratio", 2, lambda v: f"alpha/r={v:g}"
    )


def claim_targets(a: Analysis) -> Claim:
    text = "Adding the MLP layers to attention raises quality"
    method = _lora(a)
    effects = {e.value: e for e in a.effects["targets"] if e.method == method}
    if "attention" not in effects or "all-linear" not in effects:
        tried = ", ".join(map(str, effects)) or "none"
        return Claim(
            text, NOT_TESTABLE, f"needs LoRA on attention and on all-linear (tried: {tried})"
        )
    att, both = effects["attention"], effects["all-linear"]
    diff = a.evidence.difference(both.best, att.best)
    table = _effects_table(a, list(effects.values()), both, str)
    measured = f"all-linear {_est_text(both.estimate)} against attention {_est_text(att.estimate)}: difference {_cmp_text(diff)}"
    reasons = [
        _flat_reason(a),
        _limit_reason([("attention", att.estimate), ("all-linear", both.estimate)]),
        learning_rates(a, att.best).untuned(),
        learning_rates(a, both.best).untuned(),
    ]
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    if not diff.known:
        return Claim(text, NOT_TESTABLE, f"{measured}: no interval ({diff.how})", table)
    if diff.positive:
        return Claim(text, SUPPORTED, f"{measured}: higher beyond noise", table)
    if diff.negative:
        return Claim(text, CONTRADICTED, f"{measured}: lower beyond noise", table)
    return Claim(text, NOT_TESTABLE, f"{measured}: the interval includes 0", table)


def claim_lr(a: Analysis) -> Claim:
    text = "LoRA wants about 10x full fine-tuning's learning rate"
    full_name = full_method({g.method for g in a.groups})
    lora_name = adapter_method({g.method for g in a.groups}, quantized=False)
    if full_name is None or lora_name is None:
        return Claim(text, NOT_TESTABLE, "needs full fine-tuning and LoRA runs on the same inputs")
    rates = {m: learning_rates(a, _best(a, m)) for m in (full_name, lora_name)}
    rows = [
        [
            _config_text(lr.setting),
            ", ".join(f"{x:.0e}" for x in lr.tried),
            f"{lr.best:.0e}" if lr.best else "?",
            ", ".join(f"{x:.0e}" for x in lr.tied),
            _est_text(a.estimate(lr.setting)),
        ]
        for lr in rates.values()
    ]
    table = Table(
        [
            "best setting of each method",
            "learning rates tried",
            "best",
            "tied with the best",
            "best quality [95% interval]",
        ],
        rows,
    )
    full, lora = rates[full_name], rates[lora_name]
    low = min(lora.tied) / max(full.tied) if full.tied and lora.tied else math.nan
    high = max(lora.tied) / min(full.tied) if full.tied and lora.tied else math.nan
    measured = f"the learning rates tied with each method's best give a ratio of {fmt_ratio(low)} to {fmt_ratio(high)} (about 10x: {fmt_ratio(GUIDE_LR_RATIO_RANGE[0])} to {fmt_ratio(GUIDE_LR_RATIO_RANGE[1])})"
    reasons = [_flat_reason(a)]
    for lr in (full, lora):
        if lr.flat:
            reasons.append(
                f"{_config_text(lr.setting)}: quality is flat across the learning rates tried, so none is best"
            )
        reasons.append(lr.untuned())
        if (
            lr.tied
            and len(lr.tried) >= 3
            and (lr.tied[0] == lr.tried[0] or lr.tied[-1] == lr.tried[-1])
        ):
            reasons.append(
                f"{_config_text(lr.setting)}: rates tied with its best reach the edge of those tried"
            )
    reasons.append(_limit_reason([(method_label(m), a.estimate(rates[m].setting)) for m in rates]))
    reason = next((r for r in reasons if r), None)
    if reason:
        return Claim(text, NOT_TESTABLE, f"{measured}; {reason}", table)
    verdict = _range_verdict(low, high, *GUIDE_LR_RATIO_RANGE)
    if verdict == NOT_TESTABLE:
        return Claim(text, verdict, f"{measured}: the range reaches across an end of it", table)
    return Claim(text, verdict, measured, table)


def _cost_basis(a: Analysis) -> tuple[list[MethodCost], str]:
    if a.projected:
        return a.projected, f"projected to {a.target.name}"
    return a.costs, "as measured"


def claim_epd(a: Analysis) -> Claim:
    text = "LoRA gives 5-20x more experiments per dollar"
    costs, basis = _cost_basis(a)
    by = {c.method: c for c in costs}
    full_name = full_method(by)
    lora_name = adapter_method(by, quantized=False) or adapter_method(by)
    if full_name is None or lora_name is None:
        return Claim(text, NOT_TESTABLE, "needs full fine-tuning and LoRA-type runs")
    noise = a.recommendation.noise if a.recommendation else None
    share = noise.share if noise else 0.10
    rows, ranges = [], {}
    for c in costs:
        gain = by[full_name].cost_usd / c.cost_usd if c.cost_usd > 0 else math.inf
        low, high = gain * (1 - share) / (1 + share), gain * (1 + share) / (1 - share)
        ranges[c.method] = (gain, low, high)
        rows.append(
            [
                method_label(c.method),
                str(c.runs),
                fmt_usd(c.cost_usd),
                f"{fmt_ratio(gain)} ({fmt_ratio(low)} to {fmt_ratio(high)})",
            ]
        )
    table = Table(
        ["method", "runs", f"cost per run ({basis})", "experiments per dollar against full"], rows
    )
    gain, low, high = ranges[lora_name]
    noise_text = noise.text() if noise else "10%, assumed"
    measured = (
        f"{method_label(lora_name)}: {fmt_ratio(gain)} {basis}, {fmt_ratio(low)} to {fmt_ratio(high)} "
        f"allowing for a wall-time spread of {noise_text}"
    )
    verdict = _range_verdict(low, high, *GUIDE_EPD_GAIN)
    if verdict == NOT_TESTABLE:
        return Claim(text, verdict, f"{measured}: the range reaches across an end of 5-20x", table)
    return Claim(text, verdict, measured, table)


def claim_storage(a: Analysis) -> Claim:
    text = "An adapter is 50-200 MB against 14 GB (70-280x smaller)"
    storage = {c.method: c.storage_mb for c in a.costs}
    adapters = [mb for m, mb in storage.items() if is_adapter(m) and math.isfinite(mb)]
    full = full_method(storage)
    if full is None or not adapters or not math.isfinite(storage[full]):
        return Claim(
            text,
            NOT_TESTABLE,
            "needs full fine-tuning and LoRA-type runs with their artifact sizes",
        )
    adapter = statistics.fmean(adapters)
    ratio = storage[full] / adapter if adapter > 0 else math.inf
    table = Table(
        ["method", "artifact per run"], [[method_label(m), fmt_mb(mb)] for m, mb in storage.items()]
    )
    measured = f"adapter {fmt_mb(adapter)} against full {fmt_mb(storage[full])}: {fmt_ratio(ratio)} smaller (sizes are exact: no interval)"
    # The ratio grows with model size and shrinks with rank.
    return Claim(text, _range_verdict(ratio, ratio, *GUIDE_STORAGE_RATIO), measured, table)


CLAIMS = (claim_percent, claim_rank, claim_alpha, claim_targets, claim_lr, claim_epd, claim_storage)


def all_claims(a: Analysis) -> list[Claim]:
    return [claim(a) for claim in CLAIMS]


def claims_section(a: Analysis) -> Section:
    claims = all_claims(a)
    blocks: list[Block] = [
        "Each claim is supported when the measurement's 95% interval lies inside what the guide "
        "claims, contradicted when it lies entirely outside, and otherwise not testable, with "
        "the reason. Both ends of a range count. Comparisons of configurations take each one at "
        "its best learning rate, and count only where that rate was tuned (three or more "
        "rates, the best not at the edge).",
        Table(
            ["the guide says", "verdict", "why"], [[c.text, c.verdict, c.reason] for c in claims]
        ),
    ]
    for claim in claims:
        if claim.evidence is not None:
            blocks += [f"Evidence: {claim.text} ({claim.verdict}).", claim.evidence]
    return Section("The guide's claims, re-measured", blocks)
