"""The report as text: findings in Markdown, and one self-contained HTML page.

The page holds the figures as embedded PNGs, the findings as text and a table of each
statistic's latest value, so it can be mailed or attached to an issue as one file; it loads
nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from layerscope.records import Record
from layerscope.sinks import names
from layerscope.vocabulary import finding_text, is_finding, severity_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from layerscope.sinks.report import Report

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
nav a { margin-right: 1em; }
ul.findings { list-style: none; padding: 0; }
ul.findings li { margin: 0.35em 0; padding: 0.3em 0.6em; border-left: 4px solid #999; }
li.error { border-color: #b22222 !important; background: #fdf0f0; }
li.warning { border-color: #d98c00 !important; background: #fff8e6; }
li.info { border-color: #4a7ab5 !important; background: #f0f5fb; }
.severity { font-weight: bold; text-transform: uppercase; font-size: 0.8em; }
code { background: #f3f3f3; padding: 0 0.2em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def findings_markdown(findings: Sequence[Record]) -> str:
    """The findings as a Markdown list, one entry per finding, the full text of each.

    Example:
        >>> print(findings_markdown([Record(19, 0, "health", "act1:output", "finding",
        ...                                 "dead_units", 3.0, text="act1 is dead")]))
        # Findings
        <BLANKLINE>
        - **error**, step 19, `act1:output` (dead_units): act1 is dead
        <BLANKLINE>

    """
    lines = ["# Findings", "", *(f"- {finding_text(r, 'markdown')}" for r in findings)]
    return "\n".join(lines) + "\n"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def latest_table(records: Sequence[Record], order: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows (site, statistic, step, latest, min, max) of one tag's scalars, in model order.

    Example:
        >>> rs = [Record(s, 0, "loss", "", "loss", "last", v) for s, v in ((0, 2.0), (1, 1.5))]
        >>> latest_table(rs, [])
        [('model', 'Loss', '1', '1.5', '1.5', '2')]

    """
    series: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.value is not None and r.histogram is None and not is_finding(r):
            series.setdefault((r.site, r.quantity, r.statistic), []).append(r)
    sites = names.sort_sites(list(dict.fromkeys(site for site, _, _ in series)), order)
    rows = []
    for site in sites:
        for (s, quantity, statistic), rs in series.items():
            if s != site:
                continue
            last = max(rs, key=lambda r: r.step)
            values = [float(r.value) for r in rs if r.value is not None]
            rows.append(
                (
                    names.site_name(site),
                    names.quantity_title(quantity, statistic),
                    str(last.step),
                    _number(float(last.value or 0.0)),
                    _number(min(values)),
                    _number(max(values)),
                )
            )
    return rows


def render_html(
    report: Report, figures: Mapping[str, Figure] | None = None, title: str = "layerscope report"
) -> str:
    """One self-contained HTML page: findings, each tag's figure, and the latest values."""
    figures = report.figures() if figures is None else figures
    esc = html.escape

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    steps = [r.step for r in report.records]
    if steps:
        out.append(
            f"<p>{len(report.records)} records, steps {min(steps)} to {max(steps)}; "
            f"{len(report.findings)} findings.</p>"
        )
    links = [f'<a href="#{esc(tag)}">{esc(names.tag_title(tag))}</a>' for tag in figures]
    out.append('<nav><a href="#findings">Findings</a>' + "".join(links) + "</nav>")
    out.append('<h2 id="findings">Findings</h2>')
    if report.findings:
        out.append('<ul class="findings">')
        for r in report.findings:
            out.append(f'<li class="{severity_name(r.value)}">{finding_text(r, "html")}</li>')
        out.append("</ul>")
    else:
        out.append("<p>No findings were recorded.</p>")
    for tag, figure in figures.items():
        name = names.tag_title(tag)
        out.append(f'<h2 id="{esc(tag)}">{esc(name)}</h2>')
        out.append(f'<img alt="{esc(name)}" src="data:image/png;base64,{_png(figure)}">')
        rows = latest_table([r for r in report.records if r.tag == tag], report.order)
        if rows:
            out.append(f"<details><summary>Latest values ({len(rows)})</summary><table>")
            out.append(
                "<tr><th>site</th><th>statistic</th><th>step</th><th>latest</th>"
                "<th>min</th><th>max</th></tr>"
            )
            for site, statistic, step, latest, low, high in rows:
                out.append(
                    f"<tr><td>{esc(site)}</td><td>{esc(statistic)}</td><td class=num>{step}</td>"
                    f"<td class=num>{latest}</td><td class=num>{low}</td>"
                    f"<td class=num>{high}</td></tr>"
                )
            out.append("</table></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
