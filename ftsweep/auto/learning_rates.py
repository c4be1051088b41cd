"""Each method's learning rates for `ftsweep auto`: a centre from the model's width, and a ladder
of rungs half a decade apart around it (1, 3, 10, 30, ... x 10^k, as the shipped sweeps use).

Where the centres come from:

- Full fine-tuning (AdamW). The centre scales as 1 / width (hidden size), as muP's rule for Adam
  on hidden weights does (Yang et al. 2022, "Tensor Programs V"), anchored at 2e-5 for width
  4096 (conf/method/full.yaml's rate, the usual one for 7B Llama models). At SmolLM2-135M's
  width 576 that gives 1.4e-4: this project's ladder 1e-4, 3e-4, 1e-3 found 1e-4 best there
  (sweeps/lora_vs_full.yaml, README "Tasks").
- LoRA over full fine-tuning. "LoRA Without Regret" (Schulman and Thinking Machines Lab, 2025)
  measured LoRA's best rate at about 10x full fine-tuning's (about 15x in very short runs), at
  alpha = 32 with peft's alpha / r scale, on models of one to eight billion parameters (widths
  of about 2048-4096), and found it nearly independent of rank at that fixed alpha. LoRA+
  (Hayou, Ghosh and Yu 2024) shows that with the standard parametrisation the efficient rate of
  B relative to A grows with width, so a LoRA : full ratio measured at one width need not carry
  to another: it is a centre here, not an answer, and the search stage widens the ladder past
  an edge where the best rate lands on one (`ftsweep.auto.stages`).
- Alpha. ftsweep ties alpha to rank (alpha = 2r, scale 2), where "LoRA Without Regret" holds
  alpha at 32 (scale 32 / r). In the first steps B moves by about the rate per step (Adam) and
  the update's size is scale x rate x r, so the same update at scale 2 needs the rate times
  (32 / r) / 2 = 16 / r: equal at r = 16, twice at r = 8, a quarter at r = 64. (The default
  sweep's r = 64 at LoRA's r = 16 rate raised the general-text loss by +0.159 nats where r = 8 and
  full fine-tuning stayed within noise: README "Tasks".) The QLoRA paper's 2e-4 at r = 64,
  alpha = 16 (scale 0.25) on 7B models is 2.5e-5 at scale 2; this rule gives 5e-5 there.
- QLoRA trains the same adapters as LoRA on a quantised base: LoRA's rates.
- Variants: DoRA's direction trains as LoRA's does (LoRA's rates); rsLoRA's scale is
  alpha / sqrt(r) = 2 sqrt(r), sqrt(r) times LoRA's, so its rates are LoRA's / sqrt(r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Full fine-tuning's centre at width 4096 (conf/method/full.yaml), scaled by 4096 / width.
FULL_RATE_AT_4096 = 2.0e-5
ANCHOR_WIDTH = 4096
# LoRA's best rate / full fine-tuning's ("LoRA Without Regret": ~10x, ~15x in very short runs).
LORA_OVER_FULL = 10.0
# The rank at which alpha = 2r and "LoRA Without Regret"'s alpha = 32 give the same scale.
SAME_SCALE_RANK = 16
# Rungs of a ladder either side of the centre, each half a decade (x sqrt(10)) from the next.
RUNGS_EACH_SIDE = 1


@dataclass(frozen=True)
class RateHeuristic:
    """A method's centre rate and the sentence that says where it comes from."""

    centre: float
    source: str


def full_rate(width: int) -> float:
    # 2e-5 x 4096 / width: 2e-5 at 4096, 1.4e-4 at 576 (SmolLM2-135M), 1.3e-3 at 64 (tiny-llama)
    return FULL_RATE_AT_4096 * ANCHOR_WIDTH / width


def adapter_rate(width: int, rank: int, rslora: bool = False) -> float:
    """LoRA's centre at alpha = 2r: 10x full fine-tuning's, x 16 / r (see the module docstring),
    and / sqrt(r) for rsLoRA."""
    rate = full_rate(width) * LORA_OVER_FULL * SAME_SCALE_RANK / rank
    return rate / math.sqrt(rank) if rslora else rate


def heuristic(method: str, width: int, rank: int | None = None, rslora: bool = False):
    """The centre rate of a method (an adapter method at its rank) for a model of this width."""
    if rank is None:
        return RateHeuristic(
            full_rate(width),
            f"full fine-tuning: 2e-5 x 4096 / width (muP's 1/width for Adam), width {width}",
        )
    variant = ", / sqrt(r) for rsLoRA's scale" if rslora else ""
    return RateHeuristic(
        adapter_rate(width, rank, rslora),
        f"{method}: 10x full fine-tuning's (LoRA Without Regret, 2025) x 16 / r at alpha = 2r"
        f"{variant}, width {width}, r {rank}",
    )


def half_decade(rate: float) -> int:
    """The nearest rung of the 1, 3, 10, 30 ladder, as a count of half decades (1e-3 is -6)."""
    return round(2 * math.log10(rate))


def rung_value(k: int) -> float:
    """Half decade k as a rate: even k are 10^(k/2), odd ones 3 x 10^((k-1)/2)."""
    exponent, odd = divmod(k, 2)
    return float(f"{3 if odd else 1}e{exponent}")


def ladder(centre: float, each_side: int = RUNGS_EACH_SIDE) -> tuple[float, ...]:
    """The centre's rung first (the first trial of an ASHA grid always runs to the end), then
    alternately above and below it: 1.4e-3 -> (1e-3, 3e-3, 3e-4)."""
    k = half_decade(centre)
    order = [k]
    for step in range(1, each_side + 1):
        order += [k + step, k - step]
    return tuple(rung_value(i) for i in order)


def beyond(rates: tuple[float, ...] | list[float], best: float) -> float | None:
    """The next rung past the ladder's edge where `best` sits on it, else None."""
    ks = sorted(half_decade(r) for r in rates)
    k = half_decade(best)
    if len(ks) < 2 or k not in (ks[0], ks[-1]):
        return None
    return rung_value(k - 1 if k == ks[0] else k + 1)
