import numpy as np
import pytest
from matplotlib.figure import Figure

from layerscope.records import HistogramValue
from layerscope.sinks import plots


def axes():
    return Figure().add_subplot()


def test_bands_draw_lines_and_fills_with_the_given_values():
    ax = axes()
    labels = plots.plot_bands(
        ax,
        [0, 1, 2],
        mean=[1, 2, 3],
        std=[0.5, 0.5, 1],
        median=[1, 1, 2],
        q25=[0, 0, 1],
        q75=[2, 2, 3],
        minimum=[-1, -1, 0],
        maximum=[4, 4, 5],
    )
    assert labels == ["min–max", "q25–q75", "mean", "mean ± std", "median"]
    mean, median = ax.lines
    assert mean.get_ydata().tolist() == [1, 2, 3]
    assert median.get_ydata().tolist() == [1, 1, 2]
    assert median.get_linestyle() == "--"
    assert len(ax.collections) == 3
    std_band = ax.collections[2].get_paths()[0].vertices
    assert std_band[:, 1].max() == pytest.approx(4.0)  # mean + std at the last step
    assert std_band[:, 1].min() == pytest.approx(0.5)
    assert ax.get_yscale() == "linear"


def test_bands_switch_to_log_when_positive_and_spanning_decades():
    ax = axes()
    plots.plot_bands(ax, [0, 1, 2], mean=[1e-5, 1e-3, 1e-1], std=[1e-6, 1e-4, 1e-2])
    assert ax.get_yscale() == "log"
    ax = axes()
    plots.plot_bands(ax, [0, 1], mean=[-1e-5, 1e2], std=[1, 1])
    assert ax.get_yscale() == "linear"


def test_wants_log_scale_ignores_non_finite():
    assert plots.wants_log_scale([1e-3, np.nan, 10.0, np.inf])
    assert not plots.wants_log_scale([np.nan])
    assert not plots.wants_log_scale(None)


def test_lines_one_per_layer():
    ax = axes()
    lines = plots.plot_lines(ax, {"fc1": ([0, 1], [0.1, 0.2]), "fc2": ([0, 1], [0.3, 0.4])})
    assert [ln.get_label() for ln in lines] == ["fc1", "fc2"]
    assert lines[1].get_ydata().tolist() == [0.3, 0.4]


def test_stack_of_shares_sums_to_one():
    ax = axes()
    parts = plots.plot_stack(ax, [0, 1, 2], {"a": [1, 2, 0], "b": [3, -2, 0]})
    assert parts["a"].tolist() == [0.25, 0.5, 0.0]
    assert parts["b"].tolist() == [0.75, 0.5, 0.0]
    assert len(ax.collections) == 2
    top = ax.collections[1].get_paths()[0].vertices
    assert top[:, 1].max() == pytest.approx(1.0)
    assert ax.get_ylim() == (0.0, 1.0)


def test_probability_heatmap_columns_are_distributions():
    ax = axes()
    same = [HistogramValue((0.0, 1.0, 2.0), (1, 3)), HistogramValue((0.0, 1.0, 2.0), (2, 2))]
    mesh = plots.plot_probability(ax, [0, 10], same)
    assert np.asarray(mesh.get_array()).tolist() == [[0.25, 0.5], [0.75, 0.5]]
    coords = mesh.get_coordinates()
    assert coords[0, :, 0].tolist() == [0.0, 10.0, 20.0]  # each column starts at its step
    assert coords[:, 0, 1].tolist() == [0.0, 1.0, 2.0]


def test_probability_regrids_differing_edges():
    ax = axes()
    hists = [HistogramValue((0.0, 1.0), (4,)), HistogramValue((0.0, 2.0, 4.0), (1, 1))]
    mesh = plots.plot_probability(ax, [0, 1], hists, bins=4)
    probs = np.asarray(mesh.get_array())
    assert probs.shape == (4, 2)
    assert probs[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]  # centre 0.5 lands in [0, 1)
    assert probs[:, 1].tolist() == [0.0, 0.5, 0.0, 0.5]  # centres 1 and 3
    assert np.nansum(probs, axis=0).tolist() == [1.0, 1.0]


def test_probability_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="x and histograms"):
        plots.plot_probability(axes(), [0, 1], [HistogramValue((0.0, 1.0), (1,))])


def test_depth_profile_ticks_are_layers():
    ax = axes()
    lines = plots.plot_depth_profile(ax, ["fc1", "fc2", "fc3"], {0: [1, 2, 3], 9: [3, 2, 1]})
    assert [ln.get_label() for ln in lines] == ["step 0", "step 9"]
    assert lines[1].get_ydata().tolist() == [3, 2, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fc1", "fc2", "fc3"]


def axes_pixels(ax):
    """The rendered pixels inside ``ax``, RGB floats."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(ax.figure)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
    box = ax.get_window_extent()
    height = image.shape[0]
    return image[
        int(height - box.y1) + 2 : int(height - box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2
    ]


def symlog_edges():
    """Edges like the in-memory histograms': ±1e4, log-spaced down to 1e-6, and zero."""
    positive = 10.0 ** np.arange(-6.0, 4.01, 0.25)
    return np.concatenate([-positive[::-1], [0.0], positive])


def test_probability_of_wide_edges_is_trimmed_and_not_one_colour():
    edges = symlog_edges()
    rng = np.random.default_rng(0)
    hists = []
    for scale in (0.1, 0.3, 1.0):
        counts, _ = np.histogram(rng.normal(0.0, scale, 4000), bins=edges)
        hists.append(HistogramValue(tuple(edges.tolist()), tuple(int(c) for c in counts)))
    ax = Figure(figsize=(4, 3)).add_subplot()
    mesh = plots.plot_probability(ax, [0, 50, 100], hists)
    probs = np.asarray(mesh.get_array())
    assert probs.shape[0] < edges.size - 1  # empty outer buckets are gone
    assert np.all(probs.sum(axis=0) == pytest.approx(1.0))
    labels = [float(t.get_text().replace("−", "-")) for t in ax.get_yticklabels()]
    assert -10.0 <= min(labels)
    assert max(labels) <= 10.0
    pixels = axes_pixels(ax)
    assert pixels.std() > 0.1  # a picture, not one purple rectangle
    assert mesh.get_coordinates()[0, :, 0].tolist() == [0.0, 50.0, 100.0, 150.0]


def test_probability_trims_linear_edges_to_the_filled_range():
    edges = tuple(float(e) for e in range(0, 101, 10))
    h = HistogramValue(edges, (0, 4, 6, 0, 0, 0, 0, 0, 0, 0))
    mesh = plots.plot_probability(axes(), [3], [h])
    assert mesh.get_coordinates()[:, 0, 1].tolist() == [10.0, 20.0, 30.0]
    assert np.asarray(mesh.get_array()).ravel().tolist() == [0.4, 0.6]


def test_single_point_series_are_drawn_with_markers():
    ax = Figure(figsize=(3, 2)).add_subplot()
    (line,) = plots.plot_lines(ax, {"fc1": ([5], [0.3])})
    assert line.get_marker() == "o"
    assert (axes_pixels(ax) < 0.9).any(axis=-1).sum() > 10  # something coloured is drawn
    ax = Figure(figsize=(3, 2)).add_subplot()
    plots.plot_bands(ax, [5], mean=[1.0], std=[0.5], minimum=[0.0], maximum=[3.0])
    assert ax.lines[0].get_marker() == "o"
    segments = [seg for c in ax.collections for seg in c.get_segments()]
    assert sorted(abs(seg[1][1] - seg[0][1]) for seg in segments) == [1.0, 3.0]


def test_zeros_beside_values_spanning_decades_get_a_symlog_axis():
    ax = axes()
    plots.plot_lines(ax, {"dead": ([0, 1], [0.0, 0.0]), "live": ([0, 1], [1e-5, 1.0])})
    assert ax.get_yscale() == "symlog"
    ax = axes()
    plots.plot_lines(ax, {"a": ([0, 1], [0.0, 0.5])})
    assert ax.get_yscale() == "linear"


def test_one_filled_bin_says_what_it_holds():
    ax = axes()
    h = HistogramValue((-1e-9, 0.0, 1e-9, 1.0), (0, 40, 0))  # a dead ReLU: every output is 0
    plots.plot_probability(ax, [0], [h])
    assert [t.get_text() for t in ax.texts] == ["every value in [0, 1e-09]"]
