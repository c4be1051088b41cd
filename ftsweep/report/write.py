"""The report's entry point: one sweep's runs, read from MLflow, written as report.md,
report.html and plots/*.png (`write_report`)."""

from __future__ import annotations

from pathlib import Path

from ftsweep.report.analysis import analyse
from ftsweep.report.plots import draw_all
from ftsweep.report.sections import build_document


def write_report(
    tracking_uri: str, experiment: str, out_dir: Path, target_gpu: str | None = None
) -> Path:
    """Write report.md, report.html and plots/*.png for one sweep; returns the report.md path."""
    analysis = analyse(tracking_uri, experiment, target_gpu)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = draw_all(analysis, out_dir / "plots")
    document = build_document(
        analysis, {name: f"plots/{path.name}" for name, path in figures.items()}
    )
    (out_dir / "report.html").write_text(document.to_html())
    markdown = out_dir / "report.md"
    markdown.write_text(document.to_markdown())
    return markdown
