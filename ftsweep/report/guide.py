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


def percent_verdict(percent: float) -> str:
    """Where a share of full fine-tuning's quality falls against the guide's 95-99%."""
    low, high = GUIDE_PERCENT_OF_FULL
    if percent > high:
        return "above the guide's 95-99%"
    if percent >= low:
        return "inside the guide's 95-99%"
    return "below the guide's 95-99%"
