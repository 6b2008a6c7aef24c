"""The static Matplotlib report: one figure per tag, built from records alone.

Figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas; pyplot is never
imported, so rendering a report leaves no global figure state behind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.records import Record, finding_line
from layerscope.sinks import plots
from layerscope.sinks._optional import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
XS: tuple[str, ...] = ("step", "epoch")
#: Statistics drawn as a centre line with bands rather than as lines of their own.
BAND_STATISTICS: frozenset[str] = frozenset({"mean", "std", "median", "q25", "q75", "min", "max"})
_BAND_PAIRS = (("mean", "std"), ("min", "max"), ("q25", "q75"))


@dataclass
class Panel:
    """One subplot: what kind of plot, its title and y label, and the records it draws."""

    kind: str  # "bands", "lines", "stack", "probability" or "profile"
    title: str
    ylabel: str
    records: list[Record] = field(default_factory=list)

    @property
    def over_time(self) -> bool:
        """Whether the x axis is step or epoch (and may be shared)."""
        return self.kind != "profile"


def _layer(site: str) -> str:
    return site.split(":", 1)[0] if site else ""


def _label(site: str, quantity: str) -> str:
    return site or quantity


def _series(records: Sequence[Record], x: str) -> tuple[list[float], list[Any]]:
    """Values (or histograms) in x order; with x == "epoch" the last step of each epoch wins."""
    latest: dict[int, Record] = {}
    for r in sorted(records, key=lambda r: r.step):
        latest[r.step if x == "step" else r.epoch] = r
    keys = sorted(latest)
    return [float(k) for k in keys], [
        latest[k].histogram if latest[k].histogram is not None else latest[k].value for k in keys
    ]


def plan_panels(records: Sequence[Record], profile_min_layers: int = 3) -> list[Panel]:
    """Choose the subplots of one tag's figure.

    A site/quantity with a complete pair of mean & std, min & max or q25 & q75 gets a band
    panel; the other statistics get one panel per quantity.statistic with a line per site
    (a stack of shares for quantity ``"share"``), plus a depth profile when at least
    ``profile_min_layers`` sites have it; histogram records get a probability heatmap.

    Example:
        >>> rs = [Record(0, 0, "t", f"fc{i}:output", "dead", "fraction", 0.1) for i in (1, 2)]
        >>> [(p.kind, p.title) for p in plan_panels(rs)]
        [('lines', 'dead.fraction')]

    """
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    histograms: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.quantity == "finding":
            continue
        if r.histogram is not None:
            histograms.setdefault((r.site, r.quantity), []).append(r)
        elif r.value is not None:
            groups.setdefault((r.site, r.quantity), {}).setdefault(r.statistic, []).append(r)
    bands: list[Panel] = []
    across: dict[tuple[str, str], list[Record]] = {}
    for (site, quantity), by_stat in groups.items():
        banded = any(a in by_stat and b in by_stat for a, b in _BAND_PAIRS)
        consumed = set(BAND_STATISTICS) if banded else set()
        if "q25" in by_stat and "q75" in by_stat:
            consumed.add("iqr")  # the band already shows it
        for statistic, rs in by_stat.items():
            if statistic not in consumed:
                across.setdefault((quantity, statistic), []).extend(rs)
        if banded:
            chosen = [r for s, rs in by_stat.items() if s in BAND_STATISTICS for r in rs]
            bands.append(Panel("bands", _label(site, quantity), quantity, chosen))
    lines: list[Panel] = []
    profiles: list[Panel] = []
    for (quantity, statistic), rs in across.items():
        name = f"{quantity}.{statistic}"
        lines.append(Panel("stack" if quantity == "share" else "lines", name, name, rs))
        if len({r.site for r in rs}) >= profile_min_layers:
            profiles.append(Panel("profile", f"{name} by depth", name, rs))
    heatmaps = [
        Panel("probability", f"{_label(site, q)} distribution", q, rs)
        for (site, q), rs in histograms.items()
    ]
    return [*bands, *lines, *heatmaps, *profiles]


def profile_steps(xs: Sequence[float], count: int = 3) -> list[float]:
    """Up to ``count`` positions spread over ``xs``: first, middle(s), last.

    Example:
        >>> profile_steps([0, 1, 2, 3, 4])
        [0, 2, 4]

    """
    unique = sorted(set(xs))
    if len(unique) <= count:
        return unique
    picks = [unique[round(i * (len(unique) - 1) / (count - 1))] for i in range(count)]
    return sorted(set(picks))


class Report:
    """Builds one Matplotlib figure per tag from records.

    Args:
        records: the records of a run (scope.records(), or read back from event files).
        x: ``"step"`` or ``"epoch"``: the shared x axis of every panel over time.
        max_panels: at most this many panels per figure; the title says how many were left out.

    Example:
        >>> rs = [Record(s, 0, "loss", "", "loss", "last", 1.0 / (s + 1)) for s in range(3)]
        >>> report = Report(rs)
        >>> fig = report.figure("loss")
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [1.0, 0.5, 0.3333333333333333]

    """

    def __init__(self, records: Sequence[Record], x: str = "step", max_panels: int = 24) -> None:
        if x not in XS:
            raise ValueError(f"Report: x must be one of {XS}, got {x!r}")
        if max_panels < 1:
            raise ValueError(f"Report: max_panels must be at least 1, got {max_panels}")
        require("matplotlib", "plot", "Report")
        self.records = [r for r in records if isinstance(r, Record)]
        self.x = x
        self.max_panels = max_panels

    @property
    def tags(self) -> list[str]:
        """The tags with something to plot, in order of first appearance."""
        seen: dict[str, None] = {}
        for r in self.records:
            if r.quantity != "finding" and (r.value is not None or r.histogram is not None):
                seen.setdefault(r.tag, None)
        return list(seen)

    def figure(self, tag: str) -> Figure:
        """Build the figure of one tag."""
        figure_module = require("matplotlib.figure", "plot", "Report")
        panels = plan_panels([r for r in self.records if r.tag == tag])
        if not panels:
            raise ValueError(f"Report.figure: tag must be one of {self.tags}, got {tag!r}")
        shown, hidden = panels[: self.max_panels], len(panels) - self.max_panels
        ncols = 1 if len(shown) <= 3 else 2
        nrows = math.ceil(len(shown) / ncols)
        width, height = 6.4 * ncols, 2.9 * nrows + 0.6
        fig = figure_module.Figure(figsize=(width, height))
        # Fixed margins in inches: constrained layout would double the drawing time.
        fig.subplots_adjust(
            left=0.9 / width,
            right=1 - 0.5 / width,
            bottom=0.75 / height,
            top=1 - 0.6 / height,
            hspace=0.75,
            wspace=0.3,
        )
        fig.suptitle(tag if hidden <= 0 else f"{tag} ({hidden} more panels not shown)")
        time_axes = None
        for i, panel in enumerate(shown):
            share = time_axes if panel.over_time else None
            ax = fig.add_subplot(nrows, ncols, i + 1, sharex=share)
            if panel.over_time and time_axes is None:
                time_axes = ax
            draw_panel(ax, panel, self.x)
            ax.set_title(panel.title, fontsize="medium")
            ax.set_ylabel(panel.ylabel)
            if panel.over_time:
                ax.set_xlabel(self.x)
        return fig

    def figures(self) -> dict[str, Figure]:
        """Build every tag's figure, and the findings page when there are findings."""
        out = {tag: self.figure(tag) for tag in self.tags}
        page = self.findings_figure()
        if page is not None:
            out["findings"] = page
        return out

    def findings_figure(self, max_lines: int = 40) -> Figure | None:
        """A text page listing the health findings (one line each), or None without any."""
        found = sorted((r for r in self.records if r.quantity == "finding"), key=lambda r: r.step)
        if not found:
            return None
        figure_module = require("matplotlib.figure", "plot", "Report")
        lines = [finding_line(r) for r in found[:max_lines]]
        if len(found) > max_lines:
            lines.append(f"... and {len(found) - max_lines} more")
        fig = figure_module.Figure(figsize=(11, 0.6 + 0.28 * len(lines)))
        fig.suptitle("findings")
        for i, line in enumerate(lines):
            color = "firebrick" if line.startswith("error") else "black"
            fig.text(
                0.01,
                1 - (0.45 + 0.28 * (i + 1)) / fig.get_figheight(),
                line,
                fontsize="small",
                family="monospace",
                color=color,
            )
        return fig

    def save(self, out_dir: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
        """Write each tag's figure in each format into ``out_dir``; return the paths."""
        formats = check_formats(formats)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for tag, fig in self.figures().items():
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("_") or "untitled"
            for fmt in formats:
                path = out / f"{stem}.{fmt}"
                fig.savefig(path, format=fmt, dpi=110)
                paths.append(path)
        return paths


def draw_panel(ax: Any, panel: Panel, x: str = "step") -> None:
    """Draw one planned panel on ``ax`` with ``x`` (``"step"`` or ``"epoch"``) as x axis."""
    if panel.kind == "bands":
        by_stat: dict[str, list[Record]] = {}
        for r in panel.records:
            by_stat.setdefault(r.statistic, []).append(r)
        xs: list[float] = []
        values: dict[str, list[float]] = {}
        for statistic, rs in by_stat.items():
            xs_s, ys = _series(rs, x)
            xs = xs or xs_s
            if xs_s == xs:
                values[
                    "minimum"
                    if statistic == "min"
                    else "maximum"
                    if statistic == "max"
                    else statistic
                ] = ys
        plots.plot_bands(ax, xs, **values)
    elif panel.kind in ("lines", "stack"):
        by_site = _by_site(panel.records)
        series = {_label(s, rs[0].quantity): _series(rs, x) for s, rs in by_site.items()}
        if panel.kind == "lines":
            plots.plot_lines(ax, series)
        else:
            common = sorted(set.intersection(*(set(xs) for xs, _ in series.values())))
            aligned = {
                k: [dict(zip(xs, ys, strict=True))[c] for c in common]
                for k, (xs, ys) in series.items()
            }
            plots.plot_stack(ax, common, aligned)
    elif panel.kind == "probability":
        xs, hists = _series(panel.records, x)
        mesh = plots.plot_probability(ax, xs, hists)
        ax.figure.colorbar(mesh, ax=ax, label="probability")
    else:
        by_site = _by_site(panel.records)
        latest = {s: dict(zip(*_series(rs, x), strict=True)) for s, rs in by_site.items()}
        chosen = profile_steps([k for v in latest.values() for k in v])
        profiles = {int(c): [latest[s].get(c, math.nan) for s in by_site] for c in chosen}
        plots.plot_depth_profile(ax, list(by_site), profiles)
    if panel.kind != "probability" and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")


def _by_site(records: Sequence[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.site, []).append(r)
    return out


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
    """Render one figure per tag into ``out_dir`` as PNG, SVG and/or PDF; return the paths."""
    return Report(records, x=x).save(out_dir, formats)


class ReportSink:
    """A sink that collects records and renders the report when the run closes.

    Args:
        out_dir: where the figures go.
        formats: any of ``"png"``, ``"svg"``, ``"pdf"``.
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
