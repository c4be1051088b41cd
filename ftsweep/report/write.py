"""The report's entry point: one sweep's runs, read from MLflow, written as report.md,
report.html and plots/*.png (`write_report`).

Runs trained and scored on different inputs (`ftsweep.report.inputs`) are never compared. With
one set of inputs the report is `OUT/report.md`; with several, each set's report goes to
`OUT/<inputs id>/report.md` and `OUT/report.md` is an index naming each set's inputs, linking
to its report. `inputs=ID` writes one set's report alone.
"""

from __future__ import annotations

from pathlib import Path

from ftsweep.methods import method_label
from ftsweep.report.analysis import Analysis, analyse_all, pick_inputs
from ftsweep.report.plots import DRAWERS, draw_all
from ftsweep.report.render import Document, Lead, Link, Links, Section, Table, fmt_estimate
from ftsweep.report.sections import build_document
from ftsweep.report.sections_common import plural

SCORES_CACHE = ".scores"  # per-run scores fetched from MLflow, under the sweep's report folder


def _write_one(analysis: Analysis, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = draw_all(analysis, out_dir / "plots")
    document = build_document(
        analysis, {name: f"plots/{path.name}" for name, path in figures.items()}
    )
    (out_dir / "report.html").write_text(document.to_html())
    markdown = out_dir / "report.md"
    markdown.write_text(document.to_markdown())
    return markdown


def write_report(
    tracking_uri: str,
    experiment: str,
    out_dir: Path,
    target_gpu: str | None = None,
    inputs: str | None = None,
) -> Path:
    """Write the sweep's report(s); returns the path of report.md (the index where the runs are
    on several inputs, or the one set's report when `inputs` names one by id or id prefix)."""
    out_dir = Path(out_dir)
    analyses = analyse_all(tracking_uri, experiment, target_gpu, cache_dir=out_dir / SCORES_CACHE)
    several = len(analyses) > 1
    if inputs is not None:
        group = pick_inputs([a.inputs for a in analyses], inputs, experiment)
        chosen = next(a for a in analyses if a.inputs is group)
        return _write_one(chosen, out_dir / group.folder if several else out_dir)
    if not several:
        return _write_one(analyses[0], out_dir)
    for analysis in analyses:
        if analysis.rows:  # a set with the base model's run alone has nothing to report
            _write_one(analysis, out_dir / analysis.inputs.folder)
    return _write_index(analyses, experiment, out_dir)


def _headline(a: Analysis) -> str:
    rec = a.recommendation
    if not a.rows:
        return "the base model's run alone: no trial ran on these inputs"
    if rec is None:
        return "no run finished with a quality and a cost"
    if rec.group is None:
        return "no recommendation: nothing beats the base model beyond noise"
    e = rec.estimate(rec.group)
    return f"{method_label(rec.group.method)} ({rec.group.knobs}), quality {fmt_estimate(e.value, e.low, e.high)}"


def _write_index(analyses: list[Analysis], experiment: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in DRAWERS:  # a single-inputs report's plots from before must not linger here
        (out_dir / "plots" / f"{name}.png").unlink(missing_ok=True)
    rows = []
    links = []
    for a in analyses:
        d = a.inputs.describe()
        rows.append(
            [
                a.inputs.id + ("" if a.inputs.tagged else " (untagged runs)"),
                d["model"],
                d["data"],
                d["difficulty"],
                d["sizes"],
                d["evaluation"],
                f"{len(a.usable)} / {len(a.rows)}" + (" + base model" if a.baseline else ""),
                _headline(a),
            ]
        )
        if not a.rows:
            continue
        links.append(
            Link(
                f"inputs {a.inputs.id}",
                f"{a.inputs.folder}/report",
                f"({d['model']}; {d['data']}; {plural(len(a.rows), 'run')})",
            )
        )
    table = Table(
        [
            "inputs",
            "model",
            "data",
            "difficulty",
            "examples",
            "evaluation",
            "runs used / recorded",
            "recommendation",
        ],
        rows,
    )
    document = Document(
        f"Experiments per dollar: sweep {experiment}",
        [
            Lead(
                f"This sweep's runs were trained and scored on {len(analyses)} different inputs. "
                "Results on different inputs are never compared: each set has its own report."
            )
        ],
        [
            Section("Inputs", [table, "Reports:", Links(links)]),
        ],
    )
    (out_dir / "report.html").write_text(document.to_html())
    markdown = out_dir / "report.md"
    markdown.write_text(document.to_markdown())
    return markdown
