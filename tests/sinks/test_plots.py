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
    assert coords[0, :, 0].tolist() == [-5.0, 5.0, 15.0]
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
