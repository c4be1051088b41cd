"""How `ftsweep auto` ends: the sweep's report, its decision in a few lines, and the winner
merged into its base at RESULTS/auto/merged (`ftsweep.adapters.merge`).

A full fine-tuning winner has no adapter, and a trial keeps no copy of the weights it trained
(only adapters are logged): nothing of it can be merged. The best adapter run the same rule picks
is merged instead, said so, with the winner's knobs to train it again where its weights are wanted.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from ftsweep.auto.design import Design
from ftsweep.config import Config
from ftsweep.report.runs import RunRow

MERGED = "merged"
DECISION = "decision.json"  # which run RESULTS/auto/merged was merged from


@dataclass
class Outcome:
    report: Path | None
    merged: Path | None
    lines: list[str]


def _estimate_text(e) -> str:
    if not math.isfinite(e.value):
        return "not recorded"
    if e.interval is None:
        return f"{e.value:.3f} (no interval)"
    return f"{e.value:.3f} [95% CI {e.low:.3f}, {e.high:.3f}]"


def decision_lines(analysis, design: Design, stage_lines: list[str], decision: str) -> list[str]:
    """The recommendation with its interval and test quality, what was left out and why, and
    where the money went."""
    from ftsweep.methods import method_label

    lines: list[str] = []
    rec = analysis.recommendation
    if rec is None:
        lines.append("decision: no run finished with a quality and a cost")
    elif rec.group is None:
        lines.append(f"decision: nothing recommended: {rec.why_none}")
    else:
        g = rec.group
        e = analysis.evidence.quality(g)
        t = analysis.evidence.test_quality(g)
        lines += [
            f"decision: {method_label(g.method)} ({g.knobs}), {g.n} seed{'s' * (g.n > 1)}: "
            f"validation quality {_estimate_text(e)}, test quality {_estimate_text(t)}; "
            f"${rec.costs[g.ids]:.4f} a run ({rec.cost_basis})",
            f"  why: {rec.tie_break}",
        ]
        if rec.baseline is not None and g.ids in rec.lifts:
            lift = rec.lifts[g.ids]
            lines.append(
                f"  over the untrained base model ({rec.baseline.quality:.3f}): "
                f"{lift.value:+.3f} [{lift.low:+.3f}, {lift.high:+.3f}]"
            )
    if decision and not (rec is not None and decision == rec.why_none):
        lines.append(f"  stopped confirming: {decision}")
    lines += [f"  stage {line}" for line in stage_lines]
    if design.dropped:
        lines.append("left out of the design:")
        lines += [f"  {d.what}: {d.reason}" for d in design.dropped]
    skipped = [r for r in analysis.left_out if r.stop_reason == "skipped_budget"]
    stopped = [r for r in analysis.left_out if r.stop_reason == "early_stopped"]
    if stopped:
        lines.append(f"  {len(stopped)} trials stopped early by ASHA (no quality measured)")
    if skipped:
        lines.append(f"  {len(skipped)} trials not launched: the budget gate refused them")
    if analysis.spend is not None:
        spend = analysis.spend
        lines.append(
            f"where the money went: ${spend.total_usd:.4f}, {spend.total_wall_time_s:.0f} s of trials "
            f"(budget {design.budget.text()})"
        )
        lines += [
            f"  {line.kind}: {line.runs} runs, ${line.cost_usd:.4f}, {line.wall_time_s:.0f} s"
            for line in spend.lines
            if line.runs
        ]
    return lines


def _best_adapter(rec) -> RunRow | None:
    """The best seed of the adapter configuration with the highest quality estimate."""
    adapters = [g for g in rec.groups if g.first.is_adapter]
    if not adapters:
        return None
    return max(adapters, key=lambda g: rec.estimates[g.ids].value).best_run


def _merge_row(analysis) -> tuple[RunRow | None, str]:
    """The run to merge and a sentence on why that one."""
    from ftsweep.adapters.listing import NoDefaultRun, recommended_adapter_run

    rec = analysis.recommendation
    if rec is None:
        return None, "no run finished with a quality and a cost"
    run = rec.run
    if run is not None and run.is_adapter:
        return run, f"the recommended run {run.run_id[:12]} ({run.name})"
    if run is not None:
        lead = (
            f"the winner, {run.name} ({run.run_id[:12]}), is full fine-tuning: it has no adapter "
            "and a trial keeps no copy of the weights it trained, so nothing of it can be merged; "
            f"to deploy it, train it again with its knobs ({run.name}). Merged instead: "
        )
        rows = [*analysis.rows, *([analysis.baseline] if analysis.baseline else [])]
        try:
            fallback = recommended_adapter_run(
                rows, analysis.target.name if analysis.target else None
            )
        except NoDefaultRun:
            fallback = _best_adapter(rec)
        what = "the adapter run the same rule picks"
    else:
        lead = (
            f"nothing is recommended ({rec.why_none}), so this is no recommendation; merged for "
            "inspection: "
        )
        fallback = _best_adapter(rec)
        what = "the adapter run with the highest quality estimate"
    if fallback is None:
        return None, lead + "nothing (no adapter run finished)"
    return fallback, lead + f"{what}, {fallback.run_id[:12]} ({fallback.name})"


def merge_winner(cfg: Config, analysis, out: Path) -> tuple[Path | None, list[str]]:
    """The chosen run merged into `out` (again only when the choice changed since last time)."""
    from ftsweep.adapters import merge
    from ftsweep.tracking.store import tracking_uri

    row, why = _merge_row(analysis)
    if row is None:
        return None, [f"merged: nothing ({why})"]
    record = out.parent / DECISION
    if out.is_dir() and record.is_file():
        done = json.loads(record.read_text())
        if done.get("run_id") == row.run_id and (out / "config.json").is_file():
            return out, [f"merged: {out} already: {why}"]
    if out.exists():
        shutil.rmtree(out)  # ftsweep auto's own folder: a merge of an earlier choice
    uri = tracking_uri(cfg)
    run_cfg = merge.run_config(cfg, row) if merge.scored_another_model(row) else None
    merged = merge.merge_run(row, uri, out)
    lines = [f"merged: {out}, loads with AutoModelForCausalLM.from_pretrained: {why}"]
    if run_cfg is not None:
        lines.append(merge.quantised_base_note(row))
        quality = merge.score_merged(run_cfg, merged)
        merge.record_merged_quality(uri, row, quality)
        lines += merge.quality_lines(row, quality)
    record.write_text(json.dumps({"run_id": row.run_id, "run_name": row.name}, indent=1) + "\n")
    return out, lines


def finish(cfg: Config, design: Design, stage_lines: list[str], decision: str, target: str | None):
    """Write the report, say what it decided, merge the winner."""
    from ftsweep.auto.sweep_file import auto_dir
    from ftsweep.report.analysis import analyse
    from ftsweep.report.write import SCORES_CACHE, write_report
    from ftsweep.tracking.store import experiment_name, tracking_uri

    out_dir = auto_dir(cfg)
    uri, experiment = tracking_uri(cfg), experiment_name(cfg)
    inputs = _inputs_of(cfg, uri, experiment)
    report = write_report(uri, experiment, out_dir, target, inputs=inputs)
    analysis = analyse(uri, experiment, target, inputs=inputs, cache_dir=out_dir / SCORES_CACHE)
    lines = decision_lines(analysis, design, stage_lines, decision)
    merged, merge_lines = merge_winner(cfg, analysis, out_dir / MERGED)
    return Outcome(report, merged, [*lines, *merge_lines, f"report: {report}"])


def _inputs_of(cfg: Config, uri: str, experiment: str) -> str | None:
    """The id of the inputs this design's trials ran on, where the sweep holds runs on several."""
    from ftsweep.report.inputs import split_by_inputs
    from ftsweep.report.runs import load_rows
    from ftsweep.tracking.record import TAG_TRIAL_ID
    from ftsweep.trial.baseline import baseline_trial_id

    groups = split_by_inputs(load_rows(uri, experiment))
    if len(groups) < 2:
        return None
    base_id = baseline_trial_id(cfg)
    for g in groups:
        if any(r.tags.get(TAG_TRIAL_ID) == base_id for r in g.rows):
            return g.id
    return None
