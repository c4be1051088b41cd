"""`ftsweep auto`'s stages, each an ordinary sweep recorded in the sweep `auto`:

1. search: the designed grid under ASHA (`RESULTS/auto/sweep.yaml`), within its share of the
   budget;
2. widen: where a block's best learning rate sits at an edge of its ladder, the next rung past
   it, once, so the best is found inside the range tried (within the search share);
3. confirm: the best configurations again with more seeds, a round at a time, until the choice
   is settled (`ftsweep.auto.stopping`) or the budget is spent.

Every stage shares the sweep's name, so a trial is the same trial (one id, one record) in
whichever stage asks for it: a seed the search ran is not trained again by the confirm stage,
and running the same command after a kill goes on where it stopped. Every launch passes the
sweep's own budget gate (`ftsweep.sweep.budget.over_budget`, in each trial and before each
confirm round), against the whole sweep's spending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftsweep.auto import learning_rates as lr
from ftsweep.auto.design import Budget, Design, space_entry
from ftsweep.auto.stopping import MAX_SEEDS, cheapest_near_best, next_decision
from ftsweep.config import Config, validate
from ftsweep.report.evidence import ConfigGroup, Evidence
from ftsweep.report.runs import RunRow, load_rows
from ftsweep.sweep.space import TrialSpec, expand
from ftsweep.tracking.record import TAG_TRIAL_ID

# How many of the best configurations the first confirm round repeats (the best and the
# cheapest of those not significantly below it).
CONFIRM_CANDIDATES = 3
# Seeds each of them has after the first confirm round.
FIRST_CONFIRM_SEEDS = 2


@dataclass
class StageLog:
    """What the stages did, for the closing summary."""

    lines: list[str] = field(default_factory=list)
    interrupted: bool = False
    decision: str = ""


@dataclass(frozen=True)
class Point:
    """One designed trial but its seed: method, fixed knobs, learning rate."""

    method: str
    knobs: tuple[tuple[str, Any], ...]
    rate: float

    def entry(self, warmup_ratio: float) -> dict:
        return space_entry(self.method, dict(self.knobs), self.rate, warmup_ratio)


def stage_config(
    search: Config, name: str, space: list[dict], seeds: int, budget: Budget
) -> Config:
    """A later stage as a sweep: the search stage's inputs, its own space and seeds, no
    scheduler (every trial runs to the end), the whole budget (or the search share)."""
    raw = search.model_dump()
    raw["sweep"] = raw["sweep"] | {
        "description": f"ftsweep auto's {name} stage",
        "space": space,
        "seeds": seeds,
        "scheduler": "none",
        "baseline": False,  # measured by the search stage
        "budget_usd": budget.usd,
        "time_budget_s": budget.seconds,
    }
    raw["train"] = raw["train"] | {"eval_every": None}
    return validate(raw)


def spending_text(cfg: Config, budget: Budget) -> str:
    """What the sweep has spent so far against a budget, from its MLflow runs."""
    from ftsweep.sweep.budget import spent
    from ftsweep.tracking.queries import experiment_runs
    from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

    so_far = spent(experiment_runs(get_client(tracking_uri(cfg)), experiment_name(cfg)))
    parts = []
    if budget.usd is not None:
        parts.append(f"${so_far.usd:.4f} of ${budget.usd:.4f}")
    if budget.seconds is not None:
        parts.append(f"{so_far.seconds:.0f} s of {budget.seconds:.0f} s")
    return "spent " + ", ".join(parts)


def _run(cfg: Config, stage: str, console, log: StageLog, budget: Budget) -> bool:
    """Run one stage's sweep; False when it was interrupted."""
    from ftsweep.sweep.run import run_sweep

    specs = expand(cfg)
    console.print(
        f"[bold]auto: {stage}[/bold]: {len(specs)} trial{'s' * (len(specs) != 1)}; "
        f"{spending_text(cfg, budget)} before it"
    )
    outcome = run_sweep(cfg, console=console)
    rows = {r.tags.get(TAG_TRIAL_ID): r for r in _rows(cfg)}
    reasons = [rows[s.trial_id].stop_reason for s in specs if s.trial_id in rows]
    counts = {k: reasons.count(k) for k in dict.fromkeys(reasons)}
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()) or "none recorded"
    line = f"{stage}: {len(specs)} trials ({summary}); {spending_text(cfg, budget)}"
    console.print(f"auto: {line}")
    log.lines.append(line)
    if outcome.interrupted:
        log.interrupted = True
    return not outcome.interrupted


def _rows(cfg: Config) -> list[RunRow]:
    from ftsweep.tracking.store import experiment_name, tracking_uri

    return load_rows(tracking_uri(cfg), experiment_name(cfg))


def inputs_rows(cfg: Config, trial_ids: set[str]) -> list[RunRow]:
    """The sweep's runs on the inputs of these trials (the base model's run among them): runs
    on other inputs (another data set in the same results folder) are never compared."""
    from ftsweep.report.inputs import split_by_inputs

    for group in split_by_inputs(_rows(cfg)):
        if any(r.tags.get(TAG_TRIAL_ID) in trial_ids for r in group.rows):
            return group.rows
    return []


class Stages:
    """The search, widen and confirm stages of one design (see the module docstring)."""

    def __init__(self, design: Design, search: Config, console, target: str | None, cache: Path):
        self.design = design
        self.search = search
        self.console = console
        self.target = target
        self.cache = cache
        self.log = StageLog()
        # every designed point by the id of its seed-0 trial (rows -> what to repeat)
        self.points: dict[str, Point] = {}
        self._add_points(search, [(m, k, r) for m, k, r in design.points()])

    def _add_points(self, cfg: Config, points: list[tuple[str, dict, float]]) -> list[Point]:
        added = []
        for method, knobs, rate in points:
            point = Point(method, tuple(knobs.items()), rate)
            spec = self._spec(cfg, point)
            self.points.setdefault(spec.trial_id, point)
            added.append(point)
        return added

    def _spec(self, cfg: Config, point: Point) -> TrialSpec:
        """The seed-0 trial of a point, as a stage's sweep would expand it."""
        entry = point.entry(self.design.warmup_ratio)
        (spec,) = expand(stage_config(cfg, "one", [entry], 1, self.design.budget))
        return spec

    # --- stages --------------------------------------------------------------------------

    def run(self) -> StageLog:
        budget = self.design.budget
        if not _run(
            self.search, "search (ASHA)", self.console, self.log, self.design.search_budget
        ):
            return self.log
        if not self.widen():
            return self.log
        self.confirm(budget)
        return self.log

    def rows(self) -> list[RunRow]:
        return inputs_rows(self.search, set(self.points))

    def widen(self) -> bool:
        """One rung past the edge of each block's ladder where its best completed rate sits."""
        by_id = {r.tags.get(TAG_TRIAL_ID): r for r in self.rows()}
        new: list[tuple[str, dict, float]] = []
        for block in self.design.blocks:
            done = []
            for rate in block.rates:
                spec = self._spec(
                    self.search, Point(block.method, tuple(block.knobs.items()), rate)
                )
                row = by_id.get(spec.trial_id)
                if row is not None and row.usable:
                    done.append((row.quality, -row.metrics.get("eval_loss", 0.0), rate))
            if len(done) < 2 or len({round(q, 9) for q, _, _ in done}) == 1:
                continue  # nothing to locate an optimum from (or quality is flat)
            best_rate = max(done)[2]
            rung = lr.beyond(block.rates, best_rate)
            if rung is not None and 0 < rung <= 1:
                new.append((block.method, block.knobs, rung))
                self.console.print(
                    f"auto: {block.label}: best at the edge ({best_rate:.0e}) of "
                    f"{', '.join(f'{r:.0e}' for r in sorted(block.rates))}: adding {rung:.0e}"
                )
        if not new:
            return True
        points = self._add_points(self.search, new)
        warmup = self.design.warmup_ratio
        cfg = stage_config(
            self.search, "widen", [p.entry(warmup) for p in points], 1, self.design.search_budget
        )
        return _run(
            cfg, "widen (rates past an edge)", self.console, self.log, self.design.search_budget
        )

    def _recommendation(self):
        from ftsweep.report.analysis import load_target
        from ftsweep.report.recommendation import recommend
        from ftsweep.report.scores import ScoreSource

        rows = self.rows()
        evidence = Evidence(ScoreSource(self.cache))
        return recommend(rows, target=load_target(self.target), evidence=evidence)

    def _point_of(self, group: ConfigGroup) -> Point | None:
        for row in group.rows:
            point = self.points.get(row.tags.get(TAG_TRIAL_ID, ""))
            if point is not None:
                return point
        return None

    def confirm(self, budget: Budget) -> None:
        from ftsweep.sweep.budget import over_budget
        from ftsweep.tracking.queries import experiment_runs
        from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

        warmup = self.design.warmup_ratio
        for round_ in range(MAX_SEEDS):
            rec = self._recommendation()
            if rec is None:
                self.log.decision = "no trial finished with a quality and a cost"
                return
            decision = next_decision(rec)
            if round_ == 0:
                others = [g for g in rec.contenders if g is not rec.best]
                groups = [rec.best, *others[: CONFIRM_CANDIDATES - 1]]
                seeds = FIRST_CONFIRM_SEEDS
            else:
                if decision.settled:
                    self.log.decision = decision.reason
                    return
                groups = [rec.best, cheapest_near_best(rec)]
                seeds = max(g.n for g in groups) + 1
            if seeds > MAX_SEEDS:
                self.log.decision = decision.reason
                return
            points = [p for p in (self._point_of(g) for g in groups) if p is not None]
            if not points:
                self.log.decision = "the configurations to repeat were not designed by this run"
                return
            cfg = stage_config(
                self.search, "confirm", [p.entry(warmup) for p in points], seeds, budget
            )
            runs = experiment_runs(get_client(tracking_uri(cfg)), experiment_name(cfg))
            recorded = {r.data.tags.get(TAG_TRIAL_ID) for r in runs if r.info.status == "FINISHED"}
            pending = [s for s in expand(cfg) if s.trial_id not in recorded]
            if pending:
                reason = over_budget(pending[0].config, runs)
                if reason:
                    self.log.decision = f"{decision.reason}; the budget is spent ({reason})"
                    self.console.print(f"auto: confirm: not launched: {reason}")
                    return
            stage = f"confirm round {round_ + 1} ({len(points)} configurations x {seeds} seeds)"
            if not _run(cfg, stage, self.console, self.log, budget):
                return
            if any(r.stop_reason == "skipped_budget" for r in self._rows_of(pending)):
                self.log.decision = (
                    f"{next_decision(self._recommendation()).reason}; the budget is spent"
                )
                return
        self.log.decision = next_decision(self._recommendation()).reason

    def _rows_of(self, specs: list[TrialSpec]) -> list[RunRow]:
        ids = {s.trial_id for s in specs}
        return [r for r in self.rows() if r.tags.get(TAG_TRIAL_ID) in ids]
