"""Planning and drawing the report's panels: which subplots a tag gets, and each one drawn.

Shared by the static report (:mod:`layerscope.sinks.report`) and the live figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from layerscope.lenses import GradientNorms
from layerscope.observation import site_kind
from layerscope.records import Record
from layerscope.sinks import names, plots
from layerscope.vocabulary import is_finding

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


def _series(records: Sequence[Record], x: str) -> tuple[list[float], list[Any]]:
    """Values (or histograms) in x order; with x == "epoch" the last step of each epoch wins."""
    latest: dict[int, Record] = {}
    for r in sorted(records, key=lambda r: r.step):
        latest[r.step if x == "step" else r.epoch] = r
    keys = sorted(latest)
    return [float(k) for k in keys], [
        latest[k].histogram if latest[k].histogram is not None else latest[k].value for k in keys
    ]


def spread(items: Sequence[str], count: int) -> list[str]:
    """Up to ``count`` of ``items`` spread evenly from the first to the last.

    Example:
        >>> spread(list("abcdefg"), 3)
        ['a', 'd', 'g']

    """
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def plan_panels(
    records: Sequence[Record],
    profile_min_layers: int = 3,
    max_sites: int = 8,
    order: Sequence[str] | None = None,
) -> list[Panel]:
    """Choose the subplots of one tag's figure, with human titles and units.

    A quantity.statistic seen at several sites gets one panel per kind of site (outputs,
    weight gradients...) with a line per site (a stack of shares for quantity ``"share"``),
    plus a depth profile when at least ``profile_min_layers`` sites have it. A site with a
    complete pair of mean & std, min & max or q25 & q75 gets a band panel, and histogram
    records a probability heatmap; of those per-site panels at most ``max_sites`` are drawn,
    spread over the model's depth (``order``: layer names in model order).

    Example:
        >>> rs = [Record(0, 0, "t", f"fc{i}:output", "dead", "fraction", 0.1) for i in (1, 2)]
        >>> [(p.kind, p.title) for p in plan_panels(rs)]
        [('lines', 'Dead units (fraction) of outputs')]

    """
    order = names.model_order(records) if order is None else order
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    histograms: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if is_finding(r):
            continue
        if r.histogram is not None:
            histograms.setdefault((r.site, r.quantity), []).append(r)
        elif r.value is not None:
            groups.setdefault((r.site, r.quantity), {}).setdefault(r.statistic, []).append(r)
    band_sites: dict[str, list[Record]] = {}
    across: dict[tuple[str, str, str], list[Record]] = {}
    for (site, quantity), by_stat in groups.items():
        banded = any(a in by_stat and b in by_stat for a, b in _BAND_PAIRS)
        consumed = set(BAND_STATISTICS) if banded else set()
        if "q25" in by_stat and "q75" in by_stat:
            consumed.add("iqr")  # the band already shows it
        for statistic, rs in by_stat.items():
            if statistic not in consumed:
                key = (quantity, statistic, site_kind(site))
                across.setdefault(key, []).extend(rs)
        if banded:
            chosen = [r for s, rs in by_stat.items() if s in BAND_STATISTICS for r in rs]
            band_sites.setdefault(site, []).extend(chosen)
    lines: list[Panel] = []
    profiles: list[Panel] = []
    for (quantity, statistic, kind), rs in across.items():
        title = names.quantity_title(quantity, statistic, kind)
        ylabel = names.unit(quantity, statistic)
        stack = quantity == GradientNorms.SHARE.quantity  # shares of one whole stack up
        lines.append(Panel("stack" if stack else "lines", title, ylabel, rs))
        if len({r.site for r in rs}) >= profile_min_layers:
            profiles.append(Panel("profile", f"{title}, by depth", ylabel, rs))
    bands = [
        Panel(
            "bands",
            names.site_name(site),
            names.unit(band_sites[site][0].quantity, "mean"),
            band_sites[site],
        )
        for site in spread(names.sort_sites(list(band_sites), order), max_sites)
    ]
    heat_sites = spread(names.sort_sites([s for s, _ in histograms], order), max_sites)
    heatmaps = [
        Panel("probability", f"{names.site_name(site)}: distribution", "value", rs)
        for (site, _), rs in histograms.items()
        if site in heat_sites
    ]
    heatmaps.sort(key=lambda p: heat_sites.index(p.records[0].site))
    return [*lines, *profiles, *bands, *heatmaps]


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


def top_sites(by_site: dict[str, list[Record]], count: int) -> list[str]:
    """The ``count`` sites whose values reach the largest magnitude (NaN and Inf first)."""

    def peak(site: str) -> float:
        values = [abs(r.value) for r in by_site[site] if r.value is not None]
        if any(not math.isfinite(v) for v in values):
            return math.inf
        return max(values, default=-1.0)

    return sorted(by_site, key=peak, reverse=True)[:count]


def _all_equal(records: Sequence[Record]) -> bool:
    values = {r.value for r in records}
    return len(values) == 1 and all(v is not None and math.isfinite(v) for v in values)


def draw_panel(
    ax: Any,
    panel: Panel,
    x: str = "step",
    max_lines: int = 8,
    order: Sequence[str] = (),
    legend_outside: bool = False,
) -> str:
    """Draw one planned panel on ``ax`` with ``x`` (``"step"`` or ``"epoch"``) as x axis.

    At most ``max_lines`` layers are drawn (see :func:`top_sites`), in model order
    (``order``: layer names); ``legend_outside`` puts the legend right of the axes, where
    the report leaves room for it.

    Returns a note for the panel's title (``"top 8 of 65 by peak"``), or ``""``.
    """
    note = ""
    by_site = {
        s: [r for r in panel.records if r.site == s]
        for s in names.sort_sites(list(dict.fromkeys(r.site for r in panel.records)), order)
    }
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
                key = {"min": "minimum", "max": "maximum"}.get(statistic, statistic)
                values[key] = ys
        plots.plot_bands(ax, xs, **values)
    elif panel.kind == "lines" and len(by_site) > 1 and _all_equal(panel.records):
        # Thirty identical flat lines (no NaN anywhere, say) read better as one.
        first = next(iter(by_site.values()))
        plots.plot_lines(ax, {f"all {len(by_site)} layers": _series(first, x)})
    elif panel.kind == "lines":
        if len(by_site) > max_lines:
            keep = set(top_sites(by_site, max_lines))
            note = f"top {max_lines} of {len(by_site)} by peak"
            by_site = {s: rs for s, rs in by_site.items() if s in keep}
        plots.plot_lines(
            ax, {names.site_name(s, with_kind=False): _series(rs, x) for s, rs in by_site.items()}
        )
    elif panel.kind == "stack":
        series = {names.site_name(s, with_kind=False): _series(rs, x) for s, rs in by_site.items()}
        common = sorted(set.intersection(*(set(xs) for xs, _ in series.values())))
        aligned = {
            k: [abs(dict(zip(xs, ys, strict=True))[c]) for c in common]
            for k, (xs, ys) in series.items()
        }
        if len(aligned) > max_lines:
            # The largest layers by mean share keep their band; the rest are summed.
            ranked = sorted(aligned, key=lambda k: -sum(aligned[k]))
            kept = [k for k in aligned if k in ranked[: max_lines - 1]]
            rest = [aligned[k] for k in ranked[max_lines - 1 :]]
            note = f"top {max_lines - 1} of {len(aligned)} layers, the rest as other"
            aligned = {k: aligned[k] for k in kept}
            aligned[f"other {len(rest)}"] = [sum(v) for v in zip(*rest, strict=True)]
        plots.plot_stack(ax, common, aligned)
    elif panel.kind == "probability":
        xs, hists = _series(panel.records, x)
        mesh = plots.plot_probability(ax, xs, hists)
        ax.figure.colorbar(mesh, ax=ax, label="probability")
    else:
        latest = {s: dict(zip(*_series(rs, x), strict=True)) for s, rs in by_site.items()}
        chosen = profile_steps([k for v in latest.values() for k in v])
        profiles = {int(c): [latest[s].get(c, math.nan) for s in by_site] for c in chosen}
        layers = [names.site_name(s, with_kind=False) for s in by_site]
        plots.plot_depth_profile(ax, layers, profiles)
    handles, labels = ax.get_legend_handles_labels()
    # One site's line needs no legend: the title names it ("all 12 layers" does need one).
    alone = panel.kind == "lines" and len({r.site for r in panel.records}) == 1
    if panel.kind != "probability" and handles and not alone:
        if panel.kind == "stack":  # top of the stack first, as drawn
            handles, labels = handles[::-1], labels[::-1]
        if legend_outside:
            ax.legend(
                handles,
                labels,
                fontsize="small",
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                borderaxespad=0.0,
                frameon=False,
            )
        else:
            ax.legend(handles, labels, fontsize="small", loc="best")
    return note
