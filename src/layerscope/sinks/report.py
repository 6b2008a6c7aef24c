"""The static Matplotlib report: one figure per tag, built from records alone.

Findings are written as text (``findings.md``) beside the figures, and ``"html"`` gathers
figures, findings and a table of the latest values into one self-contained page
(:mod:`layerscope.sinks.report_html`).

Figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas; pyplot is never
imported, so rendering a report leaves no global figure state behind.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from layerscope.records import Record
from layerscope.sinks import names
from layerscope.sinks._optional import require
from layerscope.sinks.panels import (
    BAND_STATISTICS,
    Panel,
    draw_panel,
    plan_panels,
    profile_steps,
    spread,
    top_sites,
)
from layerscope.vocabulary import is_finding

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BAND_STATISTICS",
    "FORMATS",
    "XS",
    "Panel",
    "Report",
    "ReportSink",
    "check_formats",
    "draw_panel",
    "plan_panels",
    "profile_steps",
    "render_report",
    "spread",
    "top_sites",
]

FORMATS: tuple[str, ...] = ("png", "svg", "pdf", "html")
XS: tuple[str, ...] = ("step", "epoch")


class Report:
    """Builds one Matplotlib figure per tag from records.

    Args:
        records: the records of a run (scope.records(), or read back from event files).
        x: ``"step"`` or ``"epoch"``: the shared x axis of every panel over time.
        max_panels: at most this many panels per figure; the title says how many were left out.
        max_lines: at most this many lines per panel: the layers with the largest peak
            magnitude; the panel's title says how many there were.
        max_sites: at most this many per-layer panels (bands, histograms) per figure,
            spread over the model's depth.

    Example:
        >>> rs = [Record(s, 0, "loss", "", "loss", "last", 1.0 / (s + 1)) for s in range(3)]
        >>> report = Report(rs)
        >>> fig = report.figure("loss")
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [1.0, 0.5, 0.3333333333333333]

    """

    def __init__(
        self,
        records: Sequence[Record],
        x: str = "step",
        max_panels: int = 24,
        max_lines: int = 8,
        max_sites: int = 8,
    ) -> None:
        if x not in XS:
            raise ValueError(f"Report: x must be one of {XS}, got {x!r}")
        for option, value in (
            ("max_panels", max_panels),
            ("max_lines", max_lines),
            ("max_sites", max_sites),
        ):
            if value < 1:
                raise ValueError(f"Report: {option} must be at least 1, got {value}")
        require("matplotlib", "plot", "Report")
        self.records = [r for r in records if isinstance(r, Record)]
        self.x = x
        self.max_panels = max_panels
        self.max_lines = max_lines
        self.max_sites = max_sites
        self.order = names.model_order(self.records)

    @property
    def tags(self) -> list[str]:
        """The tags with something to plot, in order of first appearance."""
        seen: dict[str, None] = {}
        for r in self.records:
            if not is_finding(r) and (r.value is not None or r.histogram is not None):
                seen.setdefault(r.tag, None)
        return list(seen)

    @property
    def findings(self) -> list[Record]:
        """The health findings among the records, by step."""
        return sorted((r for r in self.records if is_finding(r)), key=lambda r: r.step)

    def figure(self, tag: str) -> Figure:
        """Build the figure of one tag."""
        figure_module = require("matplotlib.figure", "plot", "Report")
        rows = [r for r in self.records if r.tag == tag]
        panels = plan_panels(rows, max_sites=self.max_sites, order=self.order)
        if not panels:
            raise ValueError(f"Report.figure: tag must be one of {self.tags}, got {tag!r}")
        shown, hidden = panels[: self.max_panels], len(panels) - self.max_panels
        ncols = 1 if len(shown) <= 2 else 2
        nrows = math.ceil(len(shown) / ncols)
        # Inches: axes, the margin left of each (y label), the legend right of each, the gap
        # under each row (x label, rotated layer names) and the title band.
        title = self._suptitle(tag, rows, shown, hidden)
        titled = title != shown[0].title or len(shown) > 1
        axes_w, axes_h, left, gap = 5.0, 2.4, 1.0, 1.7
        # Room for a legend of module names ("encoder.layers.5.self_attn"), or a colour bar.
        legend = 3.3 if any(_has_legend(p) for p in shown) else 1.2
        top = 0.8 if titled else 0.45
        # Rotated layer names under a depth profile need more room than "step".
        bottom = gap if any(p.kind == "profile" for p in shown[-ncols:]) else 0.8
        width = ncols * (left + axes_w + legend)
        height = (nrows - 1) * (axes_h + gap) + axes_h + bottom + top
        fig = figure_module.Figure(figsize=(width, height))
        # Fixed margins: constrained layout would double the drawing time.
        fig.subplots_adjust(
            left=left / width,
            right=1 - legend / width,
            bottom=bottom / height,
            top=1 - top / height,
            hspace=gap / axes_h,
            wspace=(left + legend) / axes_w,
        )
        if titled:
            # In inches from the top: a tall figure's default place would overlap the panels.
            fig.suptitle(title, fontsize="large", y=1 - 0.3 / height, va="center")
        time_axes = None
        for i, panel in enumerate(shown):
            share = time_axes if panel.over_time else None
            ax = fig.add_subplot(nrows, ncols, i + 1, sharex=share)
            if panel.over_time and time_axes is None:
                time_axes = ax
            try:
                note = draw_panel(
                    ax, panel, self.x, self.max_lines, self.order, legend_outside=True
                )
            except (ValueError, TypeError, ArithmeticError) as error:
                # Malformed data read back from someone's event file: one panel says so,
                # the rest of the report is drawn.
                ax.clear()
                message = textwrap.fill(f"could not draw this panel: {error}", 60)
                ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
                note = "not drawn"
            ax.set_title(panel.title + (f" ({note})" if note else ""), fontsize="medium")
            ax.set_ylabel(panel.ylabel)
            if panel.over_time:
                ax.set_xlabel(self.x)
        return fig

    def _suptitle(self, tag: str, rows: list[Record], shown: list[Panel], hidden: int) -> str:
        title = names.tag_title(tag)
        notes = []
        per_site = {r.site for r in rows if r.histogram is not None or r.statistic == "std"}
        drawn = {p.records[0].site for p in shown if p.kind in ("bands", "probability")}
        if drawn and len(per_site) > len(drawn):
            notes.append(f"per-layer panels for {len(drawn)} of {len(per_site)} sites")
        if hidden > 0:
            notes.append(f"{hidden} more panels not shown")
        return f"{title} ({'; '.join(notes)})" if notes else title

    def figures(self) -> dict[str, Figure]:
        """Build every tag's figure."""
        return {tag: self.figure(tag) for tag in self.tags}

    def save(self, out_dir: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
        """Write the report into ``out_dir``; return the paths written.

        Each tag's figure goes out in each image format (png, svg, pdf); ``"html"`` writes
        one self-contained ``report.html`` (figures, findings, a table of the latest values).
        The findings, when there are any, always go to ``findings.md`` as well: prose is read
        and searched as text, never clipped in a picture.
        """
        from layerscope.sinks import report_html

        formats = check_formats(formats)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        figures = self.figures()
        for tag, fig in figures.items():
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("_") or "untitled"
            for fmt in formats:
                if fmt != "html":
                    path = out / f"{stem}.{fmt}"
                    fig.savefig(path, format=fmt, dpi=110)
                    paths.append(path)
        if self.findings:
            path = out / "findings.md"
            path.write_text(report_html.findings_markdown(self.findings), encoding="utf-8")
            paths.append(path)
        if "html" in formats:
            path = out / "report.html"
            path.write_text(report_html.render_html(self, figures), encoding="utf-8")
            paths.append(path)
        return paths


def _has_legend(panel: Panel) -> bool:
    if panel.kind == "probability":
        return False
    return panel.kind != "lines" or len({r.site for r in panel.records}) > 1


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate output formats; a bare string counts as one format.

    Example:
        >>> check_formats("svg")
        ('svg',)

    """
    chosen = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ValueError(f"formats must be a non-empty selection of {FORMATS}, got {formats!r}")
    return chosen


def render_report(
    records: Sequence[Record],
    out_dir: str | Path,
    formats: Sequence[str] = ("png",),
    x: str = "step",
) -> list[Path]:
    """Render the report into ``out_dir``; return the paths written.

    ``formats`` are any of png, svg, pdf (one figure per tag each) and html (one
    self-contained ``report.html``); findings go to ``findings.md`` (see :meth:`Report.save`).
    """
    return Report(records, x=x).save(out_dir, formats)


class ReportSink:
    """A sink that collects records and renders the report when the run closes.

    Args:
        out_dir: where the figures go.
        formats: any of ``"png"``, ``"svg"``, ``"pdf"``, ``"html"``.
        x: ``"step"`` or ``"epoch"``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sink = ReportSink(d)
        ...     sink.write([Record(0, 0, "loss", "", "loss", "last", 2.0)])
        ...     sink.close()
        ...     [p.name for p in sink.paths]
        ['loss.png']

    """

    def __init__(
        self, out_dir: str | Path, formats: Sequence[str] = ("png",), x: str = "step"
    ) -> None:
        if x not in XS:
            raise ValueError(f"ReportSink: x must be one of {XS}, got {x!r}")
        require("matplotlib", "plot", "ReportSink")
        self.out_dir = Path(out_dir)
        self.formats = check_formats(formats)
        self.x = x
        self.records: list[Record] = []
        self.paths: list[Path] = []

    def write(self, records: Sequence[Record]) -> None:
        """Keep the records for the report."""
        self.records.extend(records)

    def close(self) -> None:
        """Render the report."""
        self.paths = render_report(self.records, self.out_dir, self.formats, self.x)
