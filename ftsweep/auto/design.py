"""`ftsweep auto`'s design: from the data, the plan and the budget to the search stage's space,
and the reasons for everything left out.

The space is built from blocks, each one point of method x rank x targets x variant with its own
learning-rate ladder (`ftsweep.auto.learning_rates`), in the order they are worth running:

1. the centre: LoRA at r = 16 on every linear layer (QLoRA where LoRA cannot fit the hardware);
2. full fine-tuning, the bar the guide's claims measure LoRA against;
3. the rank axis: a low and a high rank (a knowledge task, which the guide says wants capacity,
   tries the high one first);
4. the targets axis: attention only, at r = 16;
5. the variant axis: DoRA at the low rank (where it is said to help most) and rsLoRA at the high
   one (where alpha / r shrinks the update most).

One factor at a time around the centre, not their product: each axis is compared at its own
best learning rate, and the whole fits budgets a product would not.

Trials launch a rung of the ladders at a time, not a block at a time: every block's centre rate
first, then every block's rate above it, then below it. The budget gate refuses the trials that
would pass the budget, and those are the last launched; by blocks, a budget that runs short
(the design's estimate is rough) bought the centre's whole ladder and no rank, target or variant
at all, where by rungs every axis is measured at its heuristic rate before any is tuned further.

A block is dropped, with its reason, when the memory plan says it cannot fit the hardware (`check_fits`), or when its
trials would take the search stage past its share of the budget (`SEARCH_SHARE`, priced by
`ftsweep.auto.estimate`); QLoRA replaces LoRA only where LoRA cannot fit.

The search stage is a grid under ASHA on training tokens: every trial warms its rate up over
the first `WARMUP_RATIO` of training, and the one rung is at two thirds of training. In
`make bench`'s ASHA check (16 LoRA configurations, 12 steps) any first rung before step 8
cut the grid's winner, a rate unstable for its first steps; with a 2-step warmup (0.17) a
rung at step 2 kept it (bench/README.md). Warmup and a late rung together keep a slow starter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ftsweep.auto import learning_rates as lr
from ftsweep.auto.estimate import TrialEstimate, baseline_estimate, trial_estimate
from ftsweep.auto.profile import DataProfile
from ftsweep.config import Config, ConfigError, validate

# The search stage's share of the budget; the confirm stage spends the rest.
SEARCH_SHARE = 0.6
# Learning-rate warmup, a share of training: bench/README.md's replay (2 steps of 12) kept
# the grid's winner under ASHA from a 2-step rung.
WARMUP_RATIO = 0.17
# ASHA's one rung, a share of training: the bench's first rung that kept the winner without warmup.
FIRST_RUNG_SHARE = 2 / 3
REDUCTION_FACTOR = 3
# ASHA's grace period, a share of the tokens expected by the rung's step (see `design`).
GRACE_SHARE = 0.5
CENTRE_RANK = 16
LOW_RANK = 4
HIGH_RANK = 64
ALPHA_RATIO = 2  # alpha = 2 x rank, the guide's rule and the shipped sweeps' convention


@dataclass(frozen=True)
class Budget:
    """Dollars and seconds of trials (either may be None: no limit of that kind)."""

    usd: float | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.usd is None and self.seconds is None:
            raise ConfigError(
                "budget: required: budget_usd=DOLLARS or time_budget_s=SECONDS (or both), above 0"
            )

    def share(self, fraction: float) -> Budget:
        return Budget(
            None if self.usd is None else self.usd * fraction,
            None if self.seconds is None else self.seconds * fraction,
        )

    def fits(self, usd: float, seconds: float) -> bool:
        return (self.usd is None or usd <= self.usd) and (
            self.seconds is None or seconds <= self.seconds
        )

    def text(self) -> str:
        parts = [f"${self.usd:.4f}"] if self.usd is not None else []
        parts += [f"{self.seconds:.0f} s"] if self.seconds is not None else []
        return " and ".join(parts)


@dataclass(frozen=True)
class Block:
    """One point of method x rank x targets x variant, with its learning-rate ladder."""

    method: str
    knobs: dict[str, Any]  # fixed method knobs (learning_rate and warmup_ratio aside)
    rates: tuple[float, ...]
    label: str  # "lora r16 all-linear"
    role: str  # why it is in the space
    rate_source: str
    estimate: TrialEstimate


@dataclass(frozen=True)
class Dropped:
    what: str
    reason: str


@dataclass(frozen=True)
class Design:
    base: Config  # the composed inputs the trials share (no sweep section of their own)
    profile: DataProfile
    budget: Budget
    blocks: tuple[Block, ...]
    dropped: tuple[Dropped, ...]
    notes: tuple[str, ...]
    eval_every: int
    rung_step: int
    grace_period_tokens: int
    baseline: TrialEstimate
    search_cost: tuple[float, float]  # the search stage's expected (dollars, seconds)
    reduction_factor: float = REDUCTION_FACTOR
    warmup_ratio: float = WARMUP_RATIO
    search_share: float = SEARCH_SHARE
    space: list[dict] = field(default_factory=list)

    @property
    def search_budget(self) -> Budget:
        return self.budget.share(self.search_share)

    @property
    def trials(self) -> int:
        return sum(len(b.rates) for b in self.blocks)

    def points(self) -> list[tuple[str, dict[str, Any], float]]:
        """Every designed trial as (method, fixed knobs, learning rate), in launch order."""
        return launch_order(self.blocks)


def launch_order(blocks) -> list[tuple[str, dict[str, Any], float]]:
    """Rung by rung (see the module docstring): the first rate of every block, then the second of
    every block, and so on; within a rung, the blocks in the order they are worth running."""
    rungs = max((len(b.rates) for b in blocks), default=0)
    return [
        (b.method, b.knobs, b.rates[i]) for i in range(rungs) for b in blocks if i < len(b.rates)
    ]


def space_entry(
    method: str, knobs: dict[str, Any], rate: float, warmup_ratio: float = WARMUP_RATIO
) -> dict:
    """One trial as a `sweep.space` entry (every stage builds its entries with this)."""
    return {
        "method": method,
        "params": {"learning_rate": [rate], "warmup_ratio": warmup_ratio, **knobs},
    }


def space_entries(blocks) -> list[dict]:
    """The search stage's `sweep.space`: one entry per trial, in launch order (a grid sweep
    launches its entries in the order they are listed)."""
    return [space_entry(method, knobs, rate) for method, knobs, rate in launch_order(blocks)]


def method_for(adapter: bool, quantized: bool = False) -> str | None:
    """The registered method that trains adapters (on a quantised base) or every weight."""
    from ftsweep.methods import all_methods

    for m in all_methods():
        if m.is_adapter == adapter and (not adapter or m.quantized == quantized):
            return m.name
    return None


def trial_config(base: Config, method: str, knobs: dict[str, Any], rate: float) -> Config:
    """The trial one point of a block stands for (the space's expansion does the same)."""
    from ftsweep.sweep.space import method_defaults

    chosen = method_defaults(method) | knobs | {"learning_rate": rate, "warmup_ratio": WARMUP_RATIO}
    return validate({**base.model_dump(), "method": chosen})


def _adapter_knobs(rank: int, targets: str, variant: str | None) -> dict[str, Any]:
    knobs: dict[str, Any] = {
        "lora_r": rank,
        "lora_alpha": ALPHA_RATIO * rank,
        "target_modules": targets,
    }
    if variant:
        knobs[variant] = True
    return knobs


# (role, rank, targets, variant knob) of each adapter block after the centre, by task kind
_ADAPTER_AXES = {
    "low": (
        "rank: a low rank (the guide's r=8 for style, and below)",
        LOW_RANK,
        "all-linear",
        None,
    ),
    "high": ("rank: a high rank (capacity for new knowledge)", HIGH_RANK, "all-linear", None),
    "attention": ("targets: attention projections only", CENTRE_RANK, "attention", None),
    "dora": ("variant: DoRA at the low rank", LOW_RANK, "all-linear", "use_dora"),
    "rslora": ("variant: rsLoRA at the high rank", HIGH_RANK, "all-linear", "use_rslora"),
}
_ORDER = {
    "knowledge": ("full", "high", "low", "attention", "rslora", "dora"),
}
_DEFAULT_ORDER = ("full", "low", "high", "attention", "dora", "rslora")


def _fit(base: Config, method: str, knobs: dict[str, Any]) -> str | None:
    from ftsweep.planning.plan import check_fits

    return check_fits(trial_config(base, method, knobs, 1e-4))


def _adapter_block(
    base: Config,
    profile: DataProfile,
    dropped: list,
    role: str,
    rank: int,
    targets: str,
    variant: str | None,
) -> Block | None:
    """LoRA at this point, or QLoRA where LoRA cannot fit; None (with the reasons) when neither."""
    lora, qlora = method_for(True, False), method_for(True, True)
    knobs = _adapter_knobs(rank, targets, variant)
    label = f"r{rank} {targets}" + (f" {variant.removeprefix('use_')}" if variant else "")
    reasons = []
    for method in (m for m in (lora, qlora) if m):
        why = _fit(base, method, knobs)
        if why is None:
            if reasons:
                dropped.append(
                    Dropped(f"{lora} {label}", f"{reasons[0]}; {method} is searched instead")
                )
            width = base.model.architecture.hidden_size
            rate = lr.heuristic(method, width, rank, rslora=variant == "use_rslora")
            return Block(
                method,
                knobs,
                lr.ladder(rate.centre),
                f"{method} {label}",
                role,
                rate.source,
                trial_estimate(trial_config(base, method, knobs, rate.centre), profile),
            )
        reasons.append(why)
    dropped.append(Dropped(f"adapters {label}", "; ".join(reasons) or "no adapter method"))
    return None


def _full_block(base: Config, profile: DataProfile, dropped: list) -> Block | None:
    full = method_for(False)
    if full is None:
        return None
    width = base.model.architecture.hidden_size
    rate = lr.heuristic(full, width)
    first_reason = None
    # AdamW, then bitsandbytes' 8-bit AdamW (2 bytes of state per weight instead of 8)
    for knobs in ({}, {"optimizer": "adamw_8bit"}):
        why = _fit(base, full, knobs)
        if why is None:
            label = full + (" adamw_8bit" if knobs else "")
            if first_reason:
                dropped.append(Dropped(full, f"{first_reason}; {label} is searched instead"))
            cfg = trial_config(base, full, knobs, rate.centre)
            return Block(
                full,
                knobs,
                lr.ladder(rate.centre),
                label,
                "the bar: full fine-tuning",
                rate.source,
                trial_estimate(cfg, profile),
            )
        first_reason = first_reason or why
    dropped.append(Dropped(full, first_reason or "cannot fit"))
    return None


def _search_cost(blocks: list[Block], baseline: TrialEstimate) -> tuple[float, float]:
    """Expected dollars and seconds of the search stage: the base model's run, then every trial;
    under ASHA a third of them (1 / reduction factor) train to the end and generate their
    replies, the rest stop at the rung, and the very first always runs to the end."""
    usd, seconds = baseline.usd, baseline.seconds
    first = True
    for block in blocks:
        e = block.estimate
        stopped_s, stopped_usd = e.stopped_at(FIRST_RUNG_SHARE)
        for _ in block.rates:
            keep = 1.0 if first else 1 / REDUCTION_FACTOR
            usd += keep * e.usd + (1 - keep) * stopped_usd
            seconds += keep * e.seconds + (1 - keep) * stopped_s
            first = False
    return usd, seconds


def design(base: Config, profile: DataProfile, budget: Budget) -> Design:
    """The search stage for these inputs and this budget (see the module docstring)."""
    if base.model.architecture is None:
        raise ConfigError(
            f"model.architecture: {base.model.name} has none; ftsweep auto sizes every method "
            f"from it (add it to conf/model/{base.model.name}.yaml)"
        )
    dropped: list[Dropped] = []
    notes: list[str] = []
    candidates: list[Block] = []
    centre = _adapter_block(
        base,
        profile,
        dropped,
        "the centre: r=16 on every linear layer",
        CENTRE_RANK,
        "all-linear",
        None,
    )
    if centre is not None:
        candidates.append(centre)
    for name in _ORDER.get(profile.kind, _DEFAULT_ORDER):
        if name == "full":
            block = _full_block(base, profile, dropped)
        else:
            block = _adapter_block(base, profile, dropped, *_ADAPTER_AXES[name])
        if block is not None:
            candidates.append(block)
    if not candidates:
        raise ConfigError(
            f"hardware={base.hardware.name}: no method fits it for model={base.model.name} "
            f"({'; '.join(d.reason for d in dropped)})"
        )
    searched_methods = {b.method for b in candidates}
    lora, qlora = method_for(True, False), method_for(True, True)
    if qlora and lora in searched_methods and qlora not in searched_methods:
        dropped.append(
            Dropped(
                qlora,
                f"not searched: {lora} fits hardware={base.hardware.name}, and QLoRA trades "
                "quality and step time for memory only",
            )
        )

    baseline = baseline_estimate(base, profile)
    search = budget.share(SEARCH_SHARE)
    chosen: list[Block] = []
    for block in candidates:
        usd, seconds = _search_cost([*chosen, block], baseline)
        if not chosen or search.fits(usd, seconds):
            chosen.append(block)
            continue
        dropped.append(
            Dropped(
                block.label,
                f"for the budget: its {len(block.rates)} trials (~${block.estimate.usd:.4f}, "
                f"~{block.estimate.seconds:.0f} s each by the plan) would take the search stage "
                f"past its share ({SEARCH_SHARE:.0%}) of the budget, {search.text()}",
            )
        )
    usd, seconds = _search_cost(chosen, baseline)
    if not search.fits(usd, seconds):
        notes.append(
            f"the budget is small for even the centre block: the search stage is planned at "
            f"${usd:.4f} / {seconds:.0f} s against {search.text()}; the budget gate skips the "
            "trials that would pass it"
        )
    steps = base.train.max_steps
    rung_step = max(1, math.ceil(FIRST_RUNG_SHARE * steps))
    tokens_per_step = profile.tokens_per_step(base)
    # ASHA reads only the evaluations (every `rung_step` steps), so any grace period up to the
    # tokens trained by the rung's step puts the rung there. Half of the expected tokens leaves
    # room for batches shorter than the data's mean: just under the expected count, as this
    # was, the 2,400-s run's trials trained 6,375 tokens by step 27 against a grace period of
    # 6,416, every rung was met only at the last step, and ASHA stopped none of them.
    grace = max(1, int(GRACE_SHARE * rung_step * tokens_per_step))
    notes += [
        f"learning rates: {b.label}: {', '.join(f'{r:.0e}' for r in sorted(b.rates))} "
        f"around {b.rate_source}"
        for b in chosen
    ]
    return Design(
        base=base,
        profile=profile,
        budget=budget,
        blocks=tuple(chosen),
        dropped=tuple(dropped),
        notes=tuple(notes),
        eval_every=rung_step,
        rung_step=rung_step,
        grace_period_tokens=grace,
        baseline=baseline,
        search_cost=(usd, seconds),
        space=space_entries(chosen),
    )


def with_gpu_precision(base: Config, chosen: set[str]) -> tuple[Config, str | None]:
    """On a GPU, 16-bit mixed precision unless train.precision was set: fp32 (the default) is
    sized for the CPU. Returns the config and a note saying what was chosen."""
    hw = base.hardware
    if hw.device != "cuda" or "train.precision" in chosen:
        return base, None
    precision = "bf16" if hw.bf16 else "fp16"
    raw = base.model_dump()
    cfg = validate({**raw, "train": raw["train"] | {"precision": precision}})
    why = "" if hw.bf16 else f" ({hw.name} has no bf16)"
    return (
        cfg,
        f"train.precision={precision} on hardware={hw.name}{why}; set train.precision= to choose",
    )
