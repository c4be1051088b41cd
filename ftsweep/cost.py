"""Dollars from device time: small pure functions whose comments show the sum."""

from __future__ import annotations

from ftsweep.config import HardwareConfig


def run_cost_usd(wall_time_s: float, hardware: HardwareConfig) -> float:
    # devices x hours x price per device-hour
    return hardware.devices_per_trial * (wall_time_s / 3600.0) * hardware.price_per_device_hour


def experiments_per_dollar(cost_usd: float) -> float:
    return 1.0 / cost_usd if cost_usd > 0 else float("inf")
