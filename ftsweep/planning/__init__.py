"""Before anything runs: prices, memory and time estimates, layouts that fit, calibration."""
