"""`ftsweep auto` against the full grid of the configurations it designed, both run for real.

- auto_compute_fraction: training tokens `ftsweep auto` spent (search under ASHA, widen, confirm)
  over the tokens the full grid of its designed space spent. Goal <= 0.35.
- auto_same_decision: 1.0 where auto recommends a configuration that the grid's paired interval
  on the validation split does not separate from the grid's best, else 0.0. Goal: 1.0.

The space is auto's own design (`ftsweep.auto.design.design`) of the inputs below: on a budget
with room for every block it is 7 blocks of 3 learning rates, 21 configurations (LoRA r16 on
every linear layer, full fine-tuning, r4, r64, attention only, DoRA at r4, rsLoRA at r64). The
budget is the smallest one whose design keeps every block (the planned search stage over its
share, `SEARCH_SHARE`), times `BUDGET_MARGIN`, since a trial's planned price is rough and a gate
that refused designed trials would measure a smaller space than the grid's.

Both sides run in fresh processes, each with its own results folder:

1. `ftsweep auto ... time_budget_s=BUDGET`, which writes RESULTS/auto/sweep.yaml and runs it;
2. `ftsweep sweep sweep=<that sweep.yaml> sweep.scheduler=none` with no budget: every designed
   configuration to the end, one seed, the base model's run as in the search stage. The trials
   are the same ones (the same ids) as auto's search stage ran.

Tokens are each run's `tokens_trained` where it ran to the end; a run ASHA stopped has none in
MLflow, and counts the most tokens it reported to the scheduler (Tune's result.json in
RESULTS/ray: what it trained up to its rung); a run the budget gate refused, and the base
model's, trained none. Every run of a side counts once per trial id.

The decision is the report's own (`ftsweep.report.recommendation.recommend`, paired intervals
from per-example scores, `ftsweep.report.evidence`) on each side's runs, costs on the hardware
the runs measured: auto's winner is the same decision when it is the grid's best, or when the
grid's run of the same configuration is not significantly below the grid's best (best minus it
a tie: the paired 95% interval includes 0). A configuration only auto ran (a learning rate its
widen stage added past an edge) is compared from auto's own runs of it, paired over the same
validation examples. Where neither side recommends anything (nothing beats the untrained base
model beyond noise, as on the random tiny model of `quick`), the decisions agree; where only one
does, they do not.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.common import compose, log, run_process

SETTINGS = {
    # bench/asha.py's setting (the domain task learns within these 12 steps), with 32 validation
    # and 32 test examples for the intervals; ~70 s a trial here by auto's own estimate
    "full": {
        "model": "smollm2-135m",
        "data": "domain",
        "num_train": 64,
        "num_eval": 32,
        "num_test": 32,
        "steps": 12,
        "batch": 4,
        "forgetting_windows": 4,
    },
    # the plumbing only: the random tiny model beats nothing, so its decision is "none"
    "quick": {
        "model": "tiny-llama",
        "data": "domain",
        "num_train": 32,
        "num_eval": 8,
        "num_test": 8,
        "steps": 6,
        "batch": 4,
        "forgetting_windows": 4,
    },
}
MIN_CONFIGURATIONS = 16
BUDGET_MARGIN = 1.5
TARGET = "cpu"  # costs where the runs were measured (auto's own default: hardware.name)
EXPERIMENT = "auto"  # the sweep name auto's stages, and so the grid of its file, record into
TIMEOUT_S = 4 * 3600


def overrides(s: dict, results_dir: Path) -> list[str]:
    return [
        f"model={s['model']}",
        f"data={s['data']}",
        f"data.num_train={s['num_train']}",
        f"data.num_eval={s['num_eval']}",
        f"data.num_test={s['num_test']}",
        f"train.max_steps={s['steps']}",
        f"train.batch_size={s['batch']}",
        f"train.forgetting_windows={s['forgetting_windows']}",
        "train.log_every=4",
        f"results_dir={results_dir}",
    ]


def budget_for(s: dict, results_dir: Path):
    """The design keeping every block, and the time budget (seconds of trials) auto gets."""
    from ftsweep.auto.design import SEARCH_SHARE, Budget, design
    from ftsweep.auto.profile import profile_data

    cfg = compose(overrides(s, results_dir))
    profile = profile_data(cfg)
    roomy = design(cfg, profile, Budget(seconds=1e12))
    budget_s = BUDGET_MARGIN * roomy.search_cost[1] / SEARCH_SHARE
    chosen = design(cfg, profile, Budget(seconds=budget_s))
    if [b.label for b in chosen.blocks] != [b.label for b in roomy.blocks]:
        raise RuntimeError(f"a budget of {budget_s:.0f} s does not keep every block")
    if chosen.trials < MIN_CONFIGURATIONS:
        raise RuntimeError(
            f"the design has {chosen.trials} configurations, under {MIN_CONFIGURATIONS}"
        )
    return chosen, budget_s


def ftsweep(*args: str) -> list[str]:
    """`ftsweep ARGS` in a fresh interpreter of this venv."""
    return [sys.executable, "-m", "ftsweep.cli", *args]


# --- tokens ----------------------------------------------------------------------------------


def reported_tokens(results_dir: Path) -> dict[str, float]:
    """The most training tokens each trial reported to Tune (its result.json under
    RESULTS/ray), by trial id."""
    out: dict[str, float] = {}
    for path in (results_dir / "ray").rglob("result.json"):
        for line in path.read_text().splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a kill
            trial_id = (result.get("config") or {}).get("trial_id") or path.parent.name
            for key in ("tokens", "tokens_trained"):
                value = result.get(key)
                if isinstance(value, int | float):
                    out[trial_id] = max(out.get(trial_id, 0.0), float(value))
    return out


def trial_tokens(rows: Iterable, reported: dict[str, float]) -> dict[str, float]:
    """Tokens each trial trained, by trial id: `tokens_trained` where a run of it logged one
    (it ran to the end), else what it reported to the scheduler (an ASHA stop), else 0 (the
    budget gate refused it, or the base model's run). A trial's runs count once, at the most."""
    from ftsweep.tracking.record import TAG_TRIAL_ID

    out: dict[str, float] = {}
    for row in rows:
        trial_id = row.tags.get(TAG_TRIAL_ID, row.run_id)
        logged = row.metrics.get("tokens_trained")
        tokens = float(logged) if logged is not None else reported.get(trial_id, 0.0)
        out[trial_id] = max(out.get(trial_id, 0.0), tokens)
    return out


def compute_fraction(auto: dict[str, float], grid: dict[str, float]) -> float:
    return sum(auto.values()) / sum(grid.values())


# --- the decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SameDecision:
    same: bool
    basis: str
    auto_choice: str | None  # the configuration auto recommends (its run name less the seed)
    grid_best: str | None
    grid_choice: str | None  # what the grid's own recommendation is
    difference: tuple[float, float, float] | None = None  # grid best - auto's choice, interval


def label(group) -> str:
    return group.first.name.rsplit(" s", 1)[0] if group is not None else "none"


def same_decision(auto_rec, grid_rec, evidence) -> SameDecision:
    """Whether auto's recommendation is one the grid's intervals do not separate from the
    grid's best (see the module docstring). `auto_rec` and `grid_rec` are `recommend`'s answers
    on each side's runs (None: nothing finished), `evidence` compares across the two stores."""
    auto_group = auto_rec.group if auto_rec is not None else None
    grid_has = grid_rec is not None and grid_rec.group is not None
    common = dict(
        auto_choice=label(auto_group) if auto_group is not None else None,
        grid_best=label(grid_rec.best) if grid_rec is not None else None,
        grid_choice=label(grid_rec.group) if grid_has else None,
    )
    if auto_group is None and not grid_has:
        return SameDecision(True, "neither side recommends a configuration", **common)
    if auto_group is None or not grid_has:
        who = "the grid" if auto_group is None else "auto"
        return SameDecision(False, f"only {who} recommends a configuration", **common)
    best = grid_rec.best
    in_grid = next((g for g in grid_rec.groups if g.key == auto_group.key), None)
    if in_grid is best:
        return SameDecision(True, "auto recommends the grid's best", **common)
    if in_grid is not None:
        comparison = grid_rec.versus_best[in_grid.ids]
        basis = "the grid's run of auto's choice against the grid's best"
    else:
        comparison = evidence.difference(best, auto_group)
        basis = "auto's runs of its choice (not in the grid) against the grid's best"
    interval = (comparison.value, comparison.low, comparison.high)
    verdict = "not separated" if comparison.tie else "significantly below"
    return SameDecision(
        comparison.tie,
        f"{basis}: {verdict} ({comparison.how})",
        difference=interval,
        **common,
    )


def recommendation(rows: list, evidence):
    from ftsweep.report.analysis import load_target
    from ftsweep.report.recommendation import recommend

    return recommend(rows, target=load_target(TARGET), evidence=evidence)


def inputs_rows(results_dir: Path) -> list:
    """The side's runs on its one set of inputs (the base model's run among them)."""
    from ftsweep.report.inputs import split_by_inputs
    from ftsweep.report.runs import load_rows

    groups = split_by_inputs(load_rows(f"sqlite:///{results_dir / 'mlflow.db'}", EXPERIMENT))
    if len(groups) != 1:
        raise RuntimeError(f"{results_dir}: runs on {len(groups)} sets of inputs, expected 1")
    return groups[0].rows


# --- the run ---------------------------------------------------------------------------------


def stage_of(row, searched: set[str]) -> str:
    from ftsweep.tracking.record import TAG_TRIAL_ID
    from ftsweep.trial.baseline import BASELINE_METHOD

    if row.method == BASELINE_METHOD:
        return "base model"
    if row.tags.get(TAG_TRIAL_ID) in searched:
        return "search"
    return "widen" if row.seed == "0" else "confirm"


def run(quick: bool = False) -> tuple[dict, dict]:
    from ftsweep.report.evidence import Evidence
    from ftsweep.report.scores import ScoreSource
    from ftsweep.sweep.space import expand
    from ftsweep.tracking.record import TAG_TRIAL_ID

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # scores fetched here
    s = SETTINGS["quick" if quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="ftsweep-bench-auto-"))
    auto_dir, grid_dir = work / "auto", work / "grid"
    try:
        designed, budget_s = budget_for(s, auto_dir)
        log(
            f"auto: design: {designed.trials} configurations in {len(designed.blocks)} blocks, "
            f"planned search {designed.search_cost[1]:.0f} s; budget {budget_s:.0f} s"
        )
        args = [*overrides(s, auto_dir), f"time_budget_s={budget_s:.1f}"]
        auto_wall, auto_out = run_process(ftsweep("auto", *args), timeout_s=TIMEOUT_S)
        log(f"auto: ftsweep auto took {auto_wall:.0f} s")
        sweep_file = auto_dir / "auto" / "sweep.yaml"
        grid_args = [
            f"sweep={sweep_file}",
            "sweep.scheduler=none",
            "sweep.budget_usd=null",
            "sweep.time_budget_s=null",
            f"results_dir={grid_dir}",
        ]
        grid_specs = expand(compose(grid_args))
        searched = {spec.trial_id for spec in grid_specs}
        if len(grid_specs) != designed.trials:
            raise RuntimeError(
                f"{sweep_file}: {len(grid_specs)} trials, designed {designed.trials}"
            )
        grid_wall, _ = run_process(ftsweep("sweep", *grid_args), timeout_s=TIMEOUT_S)
        log(f"auto: the grid ({len(grid_specs)} trials) took {grid_wall:.0f} s")

        auto_rows, grid_rows = inputs_rows(auto_dir), inputs_rows(grid_dir)
        auto_tokens = trial_tokens(auto_rows, reported_tokens(auto_dir))
        grid_tokens = trial_tokens(grid_rows, reported_tokens(grid_dir))
        evidence = Evidence(ScoreSource(work / "scores"))
        auto_rec = recommendation(auto_rows, evidence)
        grid_rec = recommendation(grid_rows, evidence)
        decision = same_decision(auto_rec, grid_rec, evidence)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stages = {r.tags.get(TAG_TRIAL_ID, r.run_id): stage_of(r, searched) for r in auto_rows}
    by_stage: dict[str, dict] = {}
    for trial_id, stage in stages.items():
        entry = by_stage.setdefault(stage, {"trials": 0, "tokens": 0.0})
        entry["trials"] += 1
        entry["tokens"] += auto_tokens.get(trial_id, 0.0)
    auto_by_id = {r.tags.get(TAG_TRIAL_ID): r for r in auto_rows}
    trials = []
    for row in grid_rows:
        trial_id = row.tags.get(TAG_TRIAL_ID)
        if trial_id not in searched:
            continue
        other = auto_by_id.get(trial_id)
        trials.append(
            {
                "trial": row.name,
                "grid_tokens": grid_tokens.get(trial_id),
                "grid_quality": row.metrics.get("quality"),
                "auto_stop": other.stop_reason if other else "missing",
                "auto_tokens": auto_tokens.get(trial_id),
                "auto_quality": other.metrics.get("quality") if other else None,
            }
        )
    decision_lines = [
        line.removeprefix("auto: ")
        for line in auto_out.splitlines()[
            next((i for i, x in enumerate(auto_out.splitlines()) if "decision" in x), 0) :
        ]
        if line.startswith("auto: ")
    ]
    figures = {
        "auto_compute_fraction": compute_fraction(auto_tokens, grid_tokens),
        "auto_same_decision": 1.0 if decision.same else 0.0,
    }
    details = {
        "model": s["model"],
        "task": s["data"],
        "settings": s,
        "configurations": designed.trials,
        "blocks": [b.label for b in designed.blocks],
        "rung_step": designed.rung_step,
        "planned_search_s": designed.search_cost[1],
        "time_budget_s": budget_s,
        "budget_margin": BUDGET_MARGIN,
        "tokens": {"auto": sum(auto_tokens.values()), "grid": sum(grid_tokens.values())},
        "auto_by_stage": by_stage,
        "stop_reasons": {
            name: {k: [r.stop_reason for r in rows].count(k) for k in {r.stop_reason for r in rows}}
            for name, rows in (("auto", auto_rows), ("grid", grid_rows))
        },
        "wall_s": {"auto": auto_wall, "grid": grid_wall},
        "decision": {
            "same": decision.same,
            "basis": decision.basis,
            "auto_choice": decision.auto_choice,
            "grid_best": decision.grid_best,
            "grid_choice": decision.grid_choice,
            "grid_best_minus_auto_choice": decision.difference,
            "auto_why_none": auto_rec.why_none if auto_rec else None,
            "grid_why_none": grid_rec.why_none if grid_rec else None,
        },
        "auto_output": decision_lines[-60:],
        "trials": trials,
    }
    return figures, details
