"""A sweep: search space -> trials, run on Ray Tune, within a budget, with progress and a summary."""
