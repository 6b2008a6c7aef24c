import numpy as np
import pytest

from layerscope.records import Record
from layerscope.sinks.report import Report, ReportSink, plan_panels, render_report
from sink_records import STEPS, activation_value


def by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def test_one_figure_per_tag(records):
    report = Report(records)
    assert report.tags == ["loss", "activations", "gradients"]
    figures = report.figures()
    assert [f.get_suptitle() for f in figures.values()] == [
        "",  # one panel: its own title, "Loss", says it all
        "Activations (layer outputs)",
        "Gradients",
    ]
    assert figures["loss"].axes[0].get_title() == "Loss"


def test_loss_line_equals_records_and_uses_log_scale(records):
    fig = Report(records).figure("loss")
    (ax,) = fig.axes
    (line,) = ax.lines
    assert line.get_xdata().tolist() == list(STEPS)
    assert line.get_ydata().tolist() == pytest.approx([2.0 * 10.0 ** (-s) for s in STEPS])
    assert ax.get_yscale() == "log"  # 2 .. 2e-4 spans four decades
    assert ax.get_xlabel() == "step"
    assert ax.get_title() == "Loss"
    assert ax.get_ylabel() == "loss"


def test_activation_panels(records):
    fig = Report(records).figure("activations")
    axes = by_title(fig)
    assert set(axes) == {
        "fc1 output",
        "fc2 output",
        "fc3 output",
        "Dead units (fraction) of outputs",
        "Dead units (fraction) of outputs, by depth",
        *(f"fc{i} output: distribution" for i in (1, 2, 3)),
    }
    band = axes["fc2 output"]
    mean, median = band.lines
    assert mean.get_ydata().tolist() == pytest.approx(
        [activation_value(1, s, "mean") for s in STEPS]
    )
    assert median.get_ydata().tolist() == pytest.approx(
        [activation_value(1, s, "median") for s in STEPS]
    )
    legend = [t.get_text() for t in band.get_legend().get_texts()]
    assert legend == ["min–max", "q25–q75", "mean", "mean ± std", "median"]
    dead = axes["Dead units (fraction) of outputs"]
    assert dead.get_ylabel() == "fraction of units"
    assert [ln.get_label() for ln in dead.lines] == ["fc1", "fc2", "fc3"]
    assert dead.lines[2].get_ydata().tolist() == pytest.approx([0.2 + 0.01 * s for s in STEPS])
    heat = axes["fc1 output: distribution"]
    probs = np.asarray(heat.collections[0].get_array())
    assert probs[:, 0].tolist() == pytest.approx([0.0, 10 / 11, 1 / 11])
    profile = axes["Dead units (fraction) of outputs, by depth"]
    assert [ln.get_label() for ln in profile.lines] == ["step 0", "step 2", "step 4"]
    assert profile.lines[2].get_ydata().tolist() == pytest.approx([0.04, 0.14, 0.24])


def test_time_axes_share_x_and_profiles_do_not(records):
    fig = Report(records).figure("activations")
    axes = by_title(fig)
    dead = "Dead units (fraction) of outputs"
    shared = axes["fc1 output"].get_shared_x_axes()
    assert shared.joined(axes["fc1 output"], axes[dead])
    assert shared.joined(axes["fc1 output"], axes["fc3 output: distribution"])
    assert not shared.joined(axes["fc1 output"], axes[f"{dead}, by depth"])


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
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fc3", "fc1"]  # top first


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
    assert [p.title for p in plan_panels(rs)] == [
        "Outputs: interquartile range",
        "fc1 output",
    ]


def finding(step, site, level, text):
    return Record(step, 0, "health", site, "finding", "dead_units", float(level), text=text)


LONG = (
    "100% of act1's units never fired over the window; check its bias/initialisation, lower "
    "the learning rate, or use LeakyReLU/GELU"
)


def test_findings_are_text_beside_the_figures(tmp_path, records):
    found = [finding(19, "act1:output", 3, LONG), finding(40, "", 1, "the loss stopped")]
    paths = render_report([*records, *found], tmp_path)
    assert not (tmp_path / "findings.png").exists()
    text = (tmp_path / "findings.md").read_text()
    assert tmp_path / "findings.md" in paths
    assert f"- **error**, step 19, `act1:output` (dead_units): {LONG}" in text
    assert "- **info**, step 40, the model (dead_units): the loss stopped" in text


def test_html_report_is_one_self_contained_page(tmp_path, records):
    paths = render_report([*records, finding(19, "act1:output", 3, LONG)], tmp_path, ["html"])
    assert [p.name for p in paths] == ["findings.md", "report.html"]
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3  # loss, activations, gradients
    assert LONG in page
    assert 'class="error"' in page
    assert "<table>" in page
    assert "fc2 output" in page
    assert "http://" not in page
    assert "https://" not in page


def transformer_like(layers=10):
    """Forward outputs in model order, gradients in reverse, as hooks deliver them."""
    names = [f"blocks.{i}.{m}" for i in range(layers) for m in ("attn", "mlp", "norm")]
    rs = []
    for step in range(3):
        rs += [
            Record(step, 0, "activations", f"{n}:output", "value", "zero_fraction", i / 100)
            for i, n in enumerate(names)
        ]
        rs += [
            Record(step, 0, "gradients", f"{n}:output.grad", "l2", "last", 1.0 + i)
            for i, n in reversed(list(enumerate(names)))
        ]
    return names, rs


def test_many_layers_top_k_lines_legend_outside_depth_in_model_order():
    names, rs = transformer_like()
    fig = Report(rs, max_lines=8).figure("gradients")
    axes = by_title(fig)
    lines = axes["L2 norm of output gradients (top 8 of 30 by peak)"]
    assert len(lines.lines) == 8
    assert [ln.get_label() for ln in lines.lines] == names[-8:]  # largest, in model order
    fig.canvas.draw()
    legend_box = lines.get_legend().get_window_extent()
    assert legend_box.x0 >= lines.get_window_extent().x1  # beside the axes, not over them
    profile = axes["L2 norm of output gradients, by depth"]
    assert profile.lines[0].get_ydata().tolist() == [1.0 + i for i in range(30)]
    ticks = [t.get_text() for t in profile.get_xticklabels()]
    assert ticks == names[:: len(names) // len(ticks)]  # model order, thinned
    assert profile.get_xlabel() == "layer, in model order"


def test_identical_flat_lines_are_drawn_once():
    rs = [
        Record(s, 0, "a", f"l{i}:output", "value", "nonfinite_fraction", 0.0)
        for s in range(3)
        for i in range(12)
    ]
    ax = Report(rs).figure("a").axes[0]
    assert ax.get_title() == "Outputs: fraction NaN or Inf"
    assert [ln.get_label() for ln in ax.lines] == ["all 12 layers"]


def test_one_step_runs_draw_markers(tmp_path):
    rs = [Record(0, 0, "gradients", f"fc{i}:weight.grad", "l2", "last", 0.1 * i) for i in (1, 2)]
    (ax, *_) = Report(rs).figure("gradients").axes
    assert [ln.get_marker() for ln in ax.lines] == ["o", "o"]


def test_distributions_of_a_real_run_are_pictures(tmp_path):
    import torch
    from matplotlib.image import imread

    import layerscope

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with layerscope.watch(model, optimizer=opt) as scope:
        for _ in range(3):
            loss = model(torch.randn(32, 8)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    report = Report(scope.records())
    fig = report.figure("distributions")
    heat = [ax for ax in fig.axes if ax.get_title().endswith(": distribution")]
    assert heat
    render_report(scope.records(), tmp_path)
    pixels = imread(tmp_path / "distributions.png")[..., :3]
    height = pixels.shape[0]
    for ax in heat:
        box = ax.get_window_extent()
        inside = pixels[int(height - box.y1) + 3 : int(height - box.y0) - 3, int(box.x0) + 3 :]
        inside = inside[:, : int(box.x1 - box.x0) - 6]
        assert inside.std() > 0.1, ax.get_title()
