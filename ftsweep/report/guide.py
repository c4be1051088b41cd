"""The vendor guide's stated numbers (a 7B model on 5K examples), as the guide states them.

Keyed by the guide's own method names: this is data about the guide, which the report sets
against what a sweep measured.
"""

from __future__ import annotations

# The guide's cost table.
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
GUIDE_PERCENT_OF_FULL = (95.0, 99.0)  # "LoRA reaches 95-99% of full fine-tuning quality"
GUIDE_EPD_GAIN = (5.0, 20.0)  # "LoRA enables 5-20x more experiments for the same budget"
GUIDE_LR_RATIO = 10.0  # full 5e-6..1e-5 against LoRA 1e-4..3e-4
# "About 10x": within half an order of magnitude of it.
GUIDE_LR_RATIO_RANGE = (GUIDE_LR_RATIO / 10**0.5, GUIDE_LR_RATIO * 10**0.5)
GUIDE_STORAGE_RATIO = (70.0, 280.0)  # 14 GB against 50-200 MB
# "Captures", "a good start": not below the best by more than this share of its quality, the
# guide's own bar for comparable quality (LoRA at 95% of full fine-tuning).
GUIDE_COMPARABLE_SHARE = 0.05


def percent_verdict(low_percent: float, high_percent: float) -> str:
    """Where the 95% interval of a share of full fine-tuning's quality falls against the
    guide's 95-99%: both ends are checked."""
    low, high = GUIDE_PERCENT_OF_FULL
    if not (low_percent == low_percent and high_percent == high_percent):  # NaN: unknown
        return "interval unknown"
    if high_percent < low:
        return "below the guide's 95-99%"
    if low_percent > high:
        return "above the guide's 95-99%"
    if low <= low_percent and high_percent <= high:
        return "inside the guide's 95-99%"
    return "interval reaches outside the guide's 95-99%: undecided"
