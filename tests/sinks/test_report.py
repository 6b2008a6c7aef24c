import numpy as np
import pytest

from layerscope.records import Record
from layerscope.sinks.report import Report, ReportSink, plan_panels, render_report
from sink_records import SITES, STEPS, activation_value


def by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def test_one_figure_per_tag(records):
    report = Report(records)
    assert report.tags == ["loss", "activations", "gradients"]
    figures = report.figures()
    assert [f.get_suptitle() for f in figures.values()] == ["loss", "activations", "gradients"]


def test_loss_line_equals_records_and_uses_log_scale(records):
    fig = Report(records).figure("loss")
    (ax,) = fig.axes
    (line,) = ax.lines
    assert line.get_xdata().tolist() == list(STEPS)
    assert line.get_ydata().tolist() == pytest.approx([2.0 * 10.0 ** (-s) for s in STEPS])
    assert ax.get_yscale() == "log"  # 2 .. 2e-4 spans four decades
    assert ax.get_xlabel() == "step"
    assert ax.get_title() == "loss.last"


def test_activation_panels(records):
    fig = Report(records).figure("activations")
    axes = by_title(fig)
    assert set(axes) == {
        *SITES,
        "dead.fraction",
        "dead.fraction by depth",
        *(f"{s} distribution" for s in SITES),
    }
    band = axes["fc2:output"]
    mean, median = band.lines
    assert mean.get_ydata().tolist() == pytest.approx(
        [activation_value(1, s, "mean") for s in STEPS]
    )
    assert median.get_ydata().tolist() == pytest.approx(
        [activation_value(1, s, "median") for s in STEPS]
    )
    legend = [t.get_text() for t in band.get_legend().get_texts()]
    assert legend == ["min–max", "q25–q75", "mean", "mean ± std", "median"]
    dead = axes["dead.fraction"]
    assert [ln.get_label() for ln in dead.lines] == list(SITES)
    assert dead.lines[2].get_ydata().tolist() == pytest.approx([0.2 + 0.01 * s for s in STEPS])
    heat = axes["fc1:output distribution"]
    probs = np.asarray(heat.collections[0].get_array())
    assert probs[:, 0].tolist() == pytest.approx([0.0, 10 / 11, 1 / 11])
    profile = axes["dead.fraction by depth"]
    assert [ln.get_label() for ln in profile.lines] == ["step 0", "step 2", "step 4"]
    assert profile.lines[2].get_ydata().tolist() == pytest.approx([0.04, 0.14, 0.24])


def test_time_axes_share_x_and_profiles_do_not(records):
    fig = Report(records).figure("activations")
    axes = by_title(fig)
    shared = axes["fc1:output"].get_shared_x_axes()
    assert shared.joined(axes["fc1:output"], axes["dead.fraction"])
    assert shared.joined(axes["fc1:output"], axes["fc3:output distribution"])
    assert not shared.joined(axes["fc1:output"], axes["dead.fraction by depth"])


def test_epoch_axis_takes_last_step_of_each_epoch(records):
    fig = Report(records, x="epoch").figure("loss")
    line = fig.axes[0].lines[0]
    assert line.get_xdata().tolist() == [0, 1]  # steps 0-2 are epoch 0, steps 3-4 epoch 1
    assert line.get_ydata().tolist() == pytest.approx([2e-2, 2e-4])
    assert fig.axes[0].get_xlabel() == "epoch"


def test_share_quantity_is_a_stack():
    rs = [
        Record(s, 0, "shares", f"fc{i}:weight.grad", "share", "fraction", float(i))
        for s in range(3)
        for i in (1, 3)
    ]
    assert [p.kind for p in plan_panels(rs)] == ["stack"]
    ax = Report(rs).figure("shares").axes[0]
    assert len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "fc1:weight.grad",
        "fc3:weight.grad",
    ]


def test_findings_are_not_plotted():
    rs = [Record(0, 0, "health", "fc1:output", "finding", "dead_units", 1.0)]
    assert plan_panels(rs) == []
    assert Report(rs).tags == []


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_render_report_writes_each_format(tmp_path, records, fmt):
    small = [r for r in records if r.tag != "activations"]
    paths = render_report(small, tmp_path, formats=(fmt,))
    assert [p.name for p in paths] == [f"loss.{fmt}", f"gradients.{fmt}"]
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[fmt]
    assert all(p.read_bytes().startswith(magic) for p in paths)


def test_report_sink_renders_on_close(tmp_path, records):
    small = [r for r in records if r.tag != "activations"]
    sink = ReportSink(tmp_path / "out", formats="svg")
    sink.write(small[:4])
    sink.write(small[4:])
    assert not (tmp_path / "out").exists()
    sink.close()
    assert [p.name for p in sink.paths] == ["loss.svg", "gradients.svg"]
    assert "gradients" in sink.paths[1].read_text()


def test_bad_options_are_named(records, tmp_path):
    with pytest.raises(ValueError, match="x must be one of"):
        Report(records, x="time")
    with pytest.raises(ValueError, match="formats"):
        render_report(records, tmp_path, formats=("jpg",))
    with pytest.raises(ValueError, match="tag must be one of"):
        Report(records).figure("nope")


def test_pyplot_state_untouched(records):
    import sys

    Report(records).figures()
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_iqr_gets_a_panel_only_without_quartiles():
    rs = [
        Record(s, 0, "a", "fc1:output", "value", stat, float(s))
        for s in range(3)
        for stat in ("median", "iqr", "min", "max")
    ]
    assert [p.title for p in plan_panels(rs)] == ["fc1:output", "value.iqr"]
