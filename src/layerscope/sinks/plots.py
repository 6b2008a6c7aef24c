"""Plot methods on Matplotlib axes: bands, probability heatmaps, stacks, lines, depth profiles.

Each function draws on an ``Axes`` it is given and keeps no state, so the static report, the
live figure and user code share them. Inputs are plain arrays; none of them knows records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from layerscope.records import HistogramValue

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.lines import Line2D

#: A log scale is chosen when the values are positive and span more than this many decades.
LOG_DECADES = 2.0


def wants_log_scale(*values: Sequence[float] | np.ndarray | None) -> bool:
    """Whether values are all positive and span more than :data:`LOG_DECADES` decades.

    Non-finite values are ignored; None arguments are skipped.

    Example:
        >>> wants_log_scale([1e-4, 1.0]), wants_log_scale([0.5, 2.0]), wants_log_scale([0, 1e3])
        (True, False, False)

    """
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in values if v is not None]
    if not arrays:
        return False
    data = np.concatenate(arrays)
    data = data[np.isfinite(data)]
    if data.size == 0 or np.any(data <= 0):
        return False
    return bool(np.log10(data.max() / data.min()) > LOG_DECADES)


def apply_scale(ax: Axes, *values: Sequence[float] | np.ndarray | None) -> str:
    """Set the y scale that shows ``values`` best, and return it.

    ``"log"`` when all are positive and span more than :data:`LOG_DECADES` decades;
    ``"symlog"`` (linear around zero up to the smallest positive value) when they are
    non-negative, hold zeros and their positive part spans that much (a dead layer's zero
    gradient norm next to live ones); else ``"linear"``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> apply_scale(Figure().add_subplot(), [0.0, 1e-6, 1.0])
        'symlog'

    """
    scale = "linear"
    if wants_log_scale(*values):
        scale = "log"
        ax.set_yscale("log")
    else:
        arrays = [np.asarray(v, dtype=np.float64).ravel() for v in values if v is not None]
        data = np.concatenate(arrays) if arrays else np.zeros(0)
        data = data[np.isfinite(data)]
        positive = data[data > 0]
        if data.size and np.all(data >= 0) and positive.size and wants_log_scale(positive):
            scale = "symlog"
            ax.set_yscale("symlog", linthresh=10.0 ** np.floor(np.log10(positive.min())))
            # Never negative values: no margin below zero; half a decade of room above.
            ax.set_ylim(0.0, float(positive.max()) * 3.0)
    return scale


def _band(ax: Axes, xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, **style: Any) -> None:
    """A shaded band; a single x gets a thick vertical bar, which fill_between cannot draw."""
    if xs.size == 1:
        alpha = style.pop("alpha")
        ax.vlines(xs, lo, hi, linewidth=8, alpha=alpha, **style)
    else:
        ax.fill_between(xs, lo, hi, linewidth=0, **style)


def _marker(n: int) -> str | None:
    """A marker for series too short to draw a line (one point draws nothing without one)."""
    return "o" if n <= 2 else None


def _array(values: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


def plot_bands(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    *,
    mean: Sequence[float] | np.ndarray | None = None,
    std: Sequence[float] | np.ndarray | None = None,
    median: Sequence[float] | np.ndarray | None = None,
    q25: Sequence[float] | np.ndarray | None = None,
    q75: Sequence[float] | np.ndarray | None = None,
    minimum: Sequence[float] | np.ndarray | None = None,
    maximum: Sequence[float] | np.ndarray | None = None,
    color: str = "C0",
) -> list[str]:
    """Draw a statistic with its bands: mean ± std, median with q25–q75, min–max.

    Whatever is given is drawn: a line for mean and median, a shaded band for each complete
    pair. The y axis turns logarithmic when the centre and range values are positive and span
    more than two decades.

    Args:
        ax: the axes to draw on.
        x: steps or epochs, one per value.
        mean: mean per ``x``.
        std: standard deviation per ``x``; drawn as a band around ``mean``.
        median: median per ``x``.
        q25: 25th percentile per ``x``; with ``q75`` drawn as a band.
        q75: 75th percentile per ``x``.
        minimum: minimum per ``x``; with ``maximum`` drawn as a band.
        maximum: maximum per ``x``.
        color: the colour of lines and bands.

    Returns:
        The legend labels drawn, in order.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().add_subplot()
        >>> plot_bands(ax, [0, 1], mean=[1.0, 2.0], std=[0.1, 0.2])
        ['mean', 'mean ± std']

    """
    xs = np.asarray(x, dtype=np.float64)
    m, s, md = _array(mean), _array(std), _array(median)
    lo, hi, mn, mx = _array(q25), _array(q75), _array(minimum), _array(maximum)
    marker = _marker(xs.size)
    labels: list[str] = []
    if mn is not None and mx is not None:
        _band(ax, xs, mn, mx, color=color, alpha=0.12, label="min–max")
        labels.append("min–max")
    if lo is not None and hi is not None:
        _band(ax, xs, lo, hi, color=color, alpha=0.22, label="q25–q75")
        labels.append("q25–q75")
    if m is not None:
        ax.plot(xs, m, color=color, linewidth=1.5, marker=marker, label="mean")
        labels.append("mean")
        if s is not None:
            _band(ax, xs, m - s, m + s, color=color, alpha=0.3, label="mean ± std")
            labels.append("mean ± std")
    if md is not None:
        ax.plot(xs, md, color=color, linewidth=1.2, linestyle="--", marker=marker, label="median")
        labels.append("median")
    apply_scale(ax, m, md, lo, hi, mn, mx)
    return labels


def plot_lines(
    ax: Axes,
    series: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
) -> list[Line2D]:
    """Draw one line per labelled ``(x, y)`` series: one quantity across layers.

    The y axis turns logarithmic when the values span decades (see :func:`apply_scale`); a
    series of one or two points gets markers.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().add_subplot()
        >>> [line.get_label() for line in plot_lines(ax, {"fc1": ([0, 1], [3, 4])})]
        ['fc1']

    """
    lines = []
    for label, (xs, ys) in series.items():
        x_values = np.asarray(xs, dtype=np.float64)
        (line,) = ax.plot(
            x_values,
            np.asarray(ys, dtype=np.float64),
            label=label,
            linewidth=1.3,
            marker=_marker(x_values.size),
            markersize=4,
        )
        lines.append(line)
    apply_scale(ax, *(ys for _, ys in series.values()))
    return lines


def shares(series: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    """Each series' share of the sum over series at each position (0 where the sum is 0).

    Example:
        >>> {k: v.tolist() for k, v in shares({"a": [1.0, 0.0], "b": [3.0, 0.0]}).items()}
        {'a': [0.25, 0.0], 'b': [0.75, 0.0]}

    """
    arrays = {k: np.nan_to_num(np.abs(np.asarray(v, dtype=np.float64))) for k, v in series.items()}
    total = np.sum(list(arrays.values()), axis=0) if arrays else np.zeros(0)
    safe = np.where(total > 0, total, 1.0)
    return {k: np.where(total > 0, v / safe, 0.0) for k, v in arrays.items()}


def plot_stack(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    series: Mapping[str, Sequence[float] | np.ndarray],
) -> dict[str, np.ndarray]:
    """Draw a stack graph of each series' share of the total (per-layer shares).

    Args:
        ax: the axes to draw on.
        x: steps or epochs.
        series: per layer, values at each ``x``; their absolute values are normalised to
            shares that sum to one.

    Returns:
        The shares drawn, by label.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().add_subplot()
        >>> plot_stack(ax, [0, 1], {"a": [1, 1], "b": [1, 3]})["b"].tolist()
        [0.5, 0.75]

    """
    parts = shares(series)
    ax.stackplot(np.asarray(x, dtype=np.float64), *parts.values(), labels=list(parts), alpha=0.85)
    ax.set_ylim(0.0, 1.0)
    return parts


def common_grid(histograms: Sequence[HistogramValue], bins: int = 64) -> np.ndarray:
    """Edges shared by all histograms: theirs if they agree, else ``bins`` linear bins.

    Example:
        >>> h = HistogramValue(edges=(0.0, 1.0, 2.0), counts=(1, 1))
        >>> common_grid([h, h]).tolist()
        [0.0, 1.0, 2.0]

    """
    first = np.asarray(histograms[0].edges, dtype=np.float64)
    if all(np.array_equal(np.asarray(h.edges, dtype=np.float64), first) for h in histograms):
        return first
    lo = min(float(h.edges[0]) for h in histograms)
    hi = max(float(h.edges[-1]) for h in histograms)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)


def probabilities(histograms: Sequence[HistogramValue], edges: np.ndarray) -> np.ndarray:
    """Per histogram, the share of its in-range counts in each bin of ``edges``.

    Counts are moved onto ``edges`` by their bin centres. Rows of empty histograms are NaN.

    Example:
        >>> h = HistogramValue(edges=(0.0, 1.0, 2.0), counts=(1, 3))
        >>> probabilities([h], np.array([0.0, 1.0, 2.0])).tolist()
        [[0.25, 0.75]]

    """
    rows = []
    for h in histogram_list(histograms):
        own, counts = h.as_arrays()
        if np.array_equal(own, edges):
            moved = counts.astype(np.float64)
        else:
            centres = (own[:-1] + own[1:]) / 2
            moved, _ = np.histogram(centres, bins=edges, weights=counts.astype(np.float64))
        total = moved.sum()
        rows.append(moved / total if total > 0 else np.full(moved.shape, np.nan))
    return np.vstack(rows)


def histogram_list(histograms: Sequence[HistogramValue]) -> list[HistogramValue]:
    """Return the histograms as a list, checked to be :class:`HistogramValue` objects."""
    out = list(histograms)
    for h in out:
        if not isinstance(h, HistogramValue):
            raise TypeError(f"histograms must be HistogramValue objects, got {type(h).__name__}")
    return out


def step_edges(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Edges of columns that start at their step ``x`` and last until the next one.

    The last column is as wide as the spacing before it, so a histogram taken at step 100 is
    drawn from step 100 on, in line with the other panels. A lone step gets a column one wide
    centred on it, so that points drawn at that step on a shared axis are not on its edge.

    Example:
        >>> step_edges([0, 2, 4]).tolist(), step_edges([3]).tolist()
        ([0.0, 2.0, 4.0, 6.0], [2.5, 3.5])

    """
    xs = np.asarray(x, dtype=np.float64)
    if xs.size == 1:
        return np.array([xs[0] - 0.5, xs[0] + 0.5])
    return np.concatenate([xs, [xs[-1] + (xs[-1] - xs[-2])]])


def occupied(probs: np.ndarray) -> slice:
    """The rows (bins) from the first to the last one that holds anything in any column.

    Example:
        >>> occupied(np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 0.0]]))
        slice(1, 3, None)

    """
    filled = np.flatnonzero(np.nansum(probs, axis=1) > 0)
    if filled.size == 0:
        return slice(0, probs.shape[0])
    return slice(int(filled[0]), int(filled[-1]) + 1)


def plot_probability(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    histograms: Sequence[HistogramValue],
    bins: int = 64,
    cmap: str = "viridis",
) -> QuadMesh:
    """Draw histograms over time as a heatmap of probability (each column sums to one).

    Bins empty in every histogram beyond the outermost filled ones are trimmed, as the
    TensorBoard sink does, so wide fixed edges (the in-memory histograms span ±1e4) do not
    squash the data into one row; each column starts at its step. Log-spaced bins are drawn
    one row per filled bin (white lines mark bins left out as empty), the y ticks labelled
    with their edges, so the narrow bins around zero show.

    Args:
        ax: the axes to draw on.
        x: step or epoch of each histogram, increasing.
        histograms: one per ``x``.
        bins: bins of the common grid when the histograms' edges differ.
        cmap: the colour map.

    Returns:
        The mesh; ``mesh.get_array()`` holds the probabilities, one row per bin.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().add_subplot()
        >>> h = HistogramValue(edges=(0.0, 1.0, 2.0, 3.0), counts=(1, 3, 0))
        >>> plot_probability(ax, [5], [h]).get_array().tolist()
        [[0.25], [0.75]]

    """
    if len(x) != len(histograms) or len(x) == 0:
        raise ValueError(
            f"plot_probability: x and histograms need the same, non-zero length; "
            f"got {len(x)} and {len(histograms)}"
        )
    edges = common_grid(histograms, bins)
    probs = probabilities(histograms, edges)
    rows = occupied(probs.T)
    edges = edges[rows.start : rows.stop + 1]
    probs = probs[:, rows]
    widths = np.diff(edges)
    if widths.size > 1 and widths.max() > 10 * widths[widths > 0].min():
        # Log-spaced bins (the in-memory histograms' reach from 1e-12 to 1e4): on a value
        # axis the narrow bins around zero, where a ReLU's zeros lie, would not show. Draw
        # each filled bin as one row, drop bins empty at every step, and mark each gap left
        # by dropped bins with a white line; the ticks name the bins' edges.
        kept = np.flatnonzero(np.nansum(probs, axis=0) > 0)
        labels = [*edges[kept], edges[kept[-1] + 1]]
        rows_y = np.arange(kept.size + 1, dtype=np.float64)
        mesh = ax.pcolormesh(
            step_edges(x), rows_y, probs[:, kept].T, cmap=cmap, vmin=0.0, shading="flat"
        )
        for gap in np.flatnonzero(np.diff(kept) > 1) + 1:
            ax.axhline(gap, color="white", linewidth=0.8)
        ticks = np.unique(np.linspace(0, kept.size, min(kept.size + 1, 9)).round().astype(int))
        ax.set_yticks(rows_y[ticks], [f"{labels[i]:.2g}" for i in ticks], fontsize="small")
        return mesh
    mesh = ax.pcolormesh(step_edges(x), edges, probs.T, cmap=cmap, vmin=0.0, shading="flat")
    if probs.shape[1] == 1:  # one filled bin is one flat colour: say what it holds
        ax.text(
            0.5,
            0.5,
            f"every value in [{edges[0]:.2g}, {edges[1]:.2g}]",
            transform=ax.transAxes,
            ha="center",
            va="center",
            backgroundcolor="white",
        )
    return mesh


def plot_depth_profile(
    ax: Axes,
    layers: Sequence[str],
    profiles: Mapping[Any, Sequence[float] | np.ndarray],
) -> list[Line2D]:
    """Draw a statistic against layer depth, one line per chosen step.

    Args:
        ax: the axes to draw on.
        layers: layer names in depth order; they label the x ticks 0, 1, 2...
        profiles: per step (the legend label), the statistic at each layer (NaN where missing).

    Returns:
        The lines, labelled ``"step N"``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().add_subplot()
        >>> [ln.get_label() for ln in plot_depth_profile(ax, ["fc1", "fc2"], {3: [1.0, 0.5]})]
        ['step 3']

    """
    depth = np.arange(len(layers), dtype=np.float64)
    lines = []
    for step, values in profiles.items():
        (line,) = ax.plot(
            depth,
            np.asarray(values, dtype=np.float64),
            marker="o",
            markersize=3 if len(layers) > 16 else 5,
            label=f"step {step}",
        )
        lines.append(line)
    # At most ~12 labels: a 6-layer transformer has dozens of sites.
    every = max(1, int(np.ceil(len(layers) / 12)))
    size = "small" if len(layers) <= 12 else "x-small"
    ax.set_xticks(depth[::every], list(layers)[::every], rotation=30, ha="right", fontsize=size)
    ax.set_xlabel("layer, in model order")
    apply_scale(ax, *profiles.values())
    return lines
