"""A small document model the report is written in once and rendered twice: Markdown and HTML.

Blocks are plain text (no inline markup), so both renderings escape everything the same way.
Figures point at PNG files by a path relative to the report, so the folder can be moved whole.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field


@dataclass
class Lead:
    """A paragraph that stands out: the recommendation's headline."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    src: str  # relative to the report file
    caption: str


@dataclass
class Link:
    """A link to another report: `target` is its path without the suffix, so the Markdown
    links to target.md and the HTML to target.html."""

    text: str
    target: str
    note: str = ""


@dataclass
class Links:
    items: list[Link]


Block = str | Lead | Bullets | Table | Figure | Links


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: list[Block]
    sections: list[Section]

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", *(_md_block(b) for b in self.intro)]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts.extend(_md_block(b) for b in section.blocks)
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{_e(self.title)}</h1>", *(_html_block(b) for b in self.intro)]
        for section in self.sections:
            body.append(f"<section>\n<h2>{_e(section.title)}</h2>")
            body.extend(_html_block(b) for b in section.blocks)
            body.append("</section>")
        return HTML_PAGE.format(title=_e(self.title), style=STYLE, body="\n".join(body))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_block(block: Block) -> str:
    if isinstance(block, Lead):
        return f"**{block.text}**"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        lines = [
            "| " + " | ".join(_md_escape(h) for h in block.headers) + " |",
            "|" + "|".join(" --- " for _ in block.headers) + "|",
        ]
        lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return f"![{block.caption}]({block.src})\n\n*{block.caption}*"
    if isinstance(block, Links):
        return "\n".join(
            f"- [{_md_link_text(link.text)}]({link.target}.md)"
            + (f" {link.note}" if link.note else "")
            for link in block.items
        )
    return block


def _md_link_text(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, Lead):
        return f'<p class="lead">{_e(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{_e(i)}</li>" for i in block.items) + "\n</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        rows = "\n".join(
            "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    if isinstance(block, Figure):
        return (
            f'<figure><img src="{_e(block.src)}" alt="{_e(block.caption)}">'
            f"<figcaption>{_e(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Links):
        items = "\n".join(
            f'<li><a href="{_e(link.target)}.html">{_e(link.text)}</a>'
            + (f" {_e(link.note)}" if link.note else "")
            + "</li>"
            for link in block.items
        )
        return f"<ul>\n{items}\n</ul>"
    return f"<p>{_e(block)}</p>"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.lead { font-size: 1.15em; font-weight: 600; background: #f0f6ff; padding: 0.7em; border-left: 4px solid #3b6fb6; }
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""


# --- numbers a person reads ------------------------------------------------------------------


def fmt_quality(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def fmt_interval(low: float, high: float, digits: int = 3) -> str:
    if math.isnan(low) or math.isnan(high):
        return "[interval unknown]"
    return f"[{_num(low, digits)}, {_num(high, digits)}]"


def _num(value: float, digits: int) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def fmt_estimate(value: float, low: float, high: float, digits: int = 3) -> str:
    """A quality with its 95% interval: "0.938 [0.844, 1.000]"."""
    if not math.isfinite(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.{digits}f} (no interval)"
    return f"{value:.{digits}f} {fmt_interval(low, high, digits)}"


def fmt_diff(value: float, low: float, high: float) -> str:
    """A difference with its 95% interval: "+0.031 [-0.031, +0.094]"."""
    if not math.isfinite(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:+.3f} (no interval)"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def fmt_percent_interval(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.1f}% (no interval)"
    hi = "unbounded" if math.isinf(high) else f"{high:.1f}%"
    return f"{value:.1f}% [{low:.1f}%, {hi}]"


def fmt_percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}%"


def fmt_usd(value: float) -> str:
    """Dollars with enough digits to tell small costs apart: $12.34, $0.0123, $0.0000456."""
    if not math.isfinite(value):
        return "n/a"
    if value >= 1 or value <= 0:
        return f"${value:,.2f}"
    decimals = -math.floor(math.log10(value)) + 2  # three significant digits
    return f"${value:.{decimals}f}"


def fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_mb(megabytes: float) -> str:
    if not math.isfinite(megabytes):
        return "n/a"
    if megabytes >= 1000:
        return f"{megabytes / 1000:.1f} GB"
    if megabytes >= 1:
        return f"{megabytes:.1f} MB"
    return f"{megabytes * 1000:.0f} kB"


def fmt_count(value: float) -> str:
    """Three significant figures with thousands separators: 1.5, 42.3, 12,300."""
    if not math.isfinite(value):
        return "unbounded" if value > 0 else "n/a"
    rounded = float(f"{value:.3g}")
    return f"{rounded:,.0f}" if rounded >= 1000 else f"{value:.3g}"


def fmt_ratio(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}x" if value < 100 else f"{value:,.0f}x"
