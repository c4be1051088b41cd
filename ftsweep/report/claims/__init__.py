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

from ftsweep.report.analysis import Analysis
from ftsweep.report.claims.cost import claim_epd, claim_storage
from ftsweep.report.claims.knobs import claim_alpha, claim_lr, claim_rank, claim_targets
from ftsweep.report.claims.quality import claim_percent
from ftsweep.report.claims.verdicts import CONTRADICTED, NOT_TESTABLE, SUPPORTED, Claim
from ftsweep.report.render import Block, Section, Table

__all__ = [
    "CLAIMS",
    "CONTRADICTED",
    "NOT_TESTABLE",
    "SUPPORTED",
    "Claim",
    "all_claims",
    "claim_alpha",
    "claim_epd",
    "claim_lr",
    "claim_percent",
    "claim_rank",
    "claim_storage",
    "claim_targets",
    "claims_section",
]


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
