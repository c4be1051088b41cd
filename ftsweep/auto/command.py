"""`ftsweep auto model=... data=... hardware=... budget_usd=N | time_budget_s=N [target=GPU]`:
design the search from the data, the plan and the budget, run it, confirm the best with more
seeds, report, and merge the winner (`ftsweep.auto`). Run the same command again to resume."""

from __future__ import annotations

import math
import os

from ftsweep.config import ConfigError

# The command's own arguments (not config keys), for the CLI to take out before composing.
EXTRA_ARGS = ("budget_usd", "time_budget_s", "target")
# Config groups the design sets itself: a sweep to edit is RESULTS/auto/sweep.yaml.
DESIGNED = ("sweep", "method")


def parse_budget(extra: dict[str, str]):
    """budget_usd= and time_budget_s= as a Budget; one of them is required, each above 0."""
    from ftsweep.auto.design import Budget

    values: dict[str, float] = {}
    for key, what in (("budget_usd", "dollars"), ("time_budget_s", "seconds of trials")):
        if key not in extra:
            continue
        try:
            value = float(extra[key])
        except ValueError:
            raise ConfigError(f"{key}={extra[key]}: not a number ({what}, above 0)") from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{key}={extra[key]}: must be above 0 ({what})")
        values[key] = value
    return Budget(values.get("budget_usd"), values.get("time_budget_s"))


def check_overrides(overrides: list[str]) -> None:
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] in DESIGNED:
            raise ConfigError(
                f"{override}: ftsweep auto designs the methods and the sweep itself (it takes "
                "model=, data=, hardware=, train.*, data.*, results_dir=; the budget as "
                "budget_usd= or time_budget_s=); to change the design, edit RESULTS/auto/sweep.yaml "
                "and run it with `ftsweep sweep sweep=RESULTS/auto/sweep.yaml`"
            )


def _console():
    from rich.console import Console

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 160
    return console


def print_design(console, design, path, kept) -> None:
    from rich.markup import escape

    d, b = design, design.base
    for line in d.profile.lines(b):
        console.print(f"auto: {escape(line)}")
    console.print(
        f"auto: design: {d.trials} trials in {len(d.blocks)} blocks (launched a rung of every "
        f"block's ladder at a time), planned ~${d.search_cost[0]:.4f} "
        f"/ ~{d.search_cost[1]:.0f} s with the base model's run, against the search stage's "
        f"{d.search_share:.0%} of the budget ({d.search_budget.text()} of {d.budget.text()})"
    )
    for block in d.blocks:
        rates = ", ".join(f"{r:.0e}" for r in sorted(block.rates))
        console.print(f"auto:   {escape(block.label)} at {rates}: {escape(block.role)}")
    for item in d.dropped:
        console.print(
            f"auto:   [yellow]left out {escape(item.what)}[/yellow]: {escape(item.reason)}"
        )
    for note in d.notes:
        console.print(f"auto:   {escape(note)}")
    console.print(
        f"auto: ASHA: one rung at step {d.rung_step} of {b.train.max_steps}, keeping 1 in "
        f"{d.reduction_factor:g}; warmup over the first {d.warmup_ratio:.0%} of steps"
    )
    if kept is not None:
        console.print(f"auto: [yellow]a different sweep file was there: kept as {kept}[/yellow]")
    console.print(f"auto: the designed sweep: {path}  (ftsweep sweep sweep={path} runs it alone)")


def cmd_auto(overrides: list[str], extra: dict[str, str]) -> int:
    """The whole of `ftsweep auto`; returns the exit status (130: interrupted, resumable)."""
    budget = parse_budget(extra)
    check_overrides(overrides)
    from ftsweep.config import compose

    base = compose(overrides)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from ftsweep.auto.design import design, with_gpu_precision
    from ftsweep.auto.finish import finish
    from ftsweep.auto.profile import profile_data
    from ftsweep.auto.stages import Stages
    from ftsweep.auto.sweep_file import auto_dir, write_sweep_file
    from ftsweep.report.analysis import load_target
    from ftsweep.report.write import SCORES_CACHE

    # costs are compared where the user says the model will train, by default where it ran
    target = extra.get("target") or base.hardware.name
    load_target(target)  # a ConfigError naming the options when there is no such hardware
    console = _console()
    base, note = with_gpu_precision(base, {o.split("=", 1)[0].lstrip("+") for o in overrides})
    if note:
        console.print(f"auto: {note}")
    designed = design(base, profile_data(base), budget)
    path, kept = write_sweep_file(designed)
    print_design(console, designed, path, kept)
    search = compose([f"sweep={path}"])
    stages = Stages(designed, search, console, target, auto_dir(search) / SCORES_CACHE)
    log = stages.run()
    if log.interrupted:
        console.print("[yellow]auto interrupted: run the same command again to resume it[/yellow]")
        return 130
    outcome = finish(search, designed, log.lines, log.decision, target)
    from rich.markup import escape

    for line in outcome.lines:
        console.print(f"auto: {escape(line)}")
    return 0
