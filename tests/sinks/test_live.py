import matplotlib
import pytest
from matplotlib.image import imread

from layerscope.records import Record
from layerscope.sinks.live import DrawThrottle, LiveFigure


class SteppedClock:
    """Returns the next given time at each call; the test decides how long draws take."""

    def __init__(self, times):
        self.times = list(times)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.times.pop(0)


def loss(step, value):
    return Record(step, 0, "loss", "", "loss", "last", value)


def test_throttle_waits_for_draw_time_over_budget():
    t = DrawThrottle(budget=0.1)
    assert t.ready(100.0)
    t.drawn(100.0, 102.0)  # 2 s: next draw no sooner than 20 s after its start
    assert not t.ready(101.0)
    assert not t.ready(119.9)
    assert t.ready(120.0)
    t.drawn(120.0, 120.1)
    assert t.ready(121.0)
    assert t.draws == 2
    assert t.drawing_time == pytest.approx(2.1)


def test_throttle_rejects_bad_budget():
    for budget in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="budget must be in"):
            DrawThrottle(budget)


def test_live_figure_skips_redraws_while_over_budget(tmp_path):
    # write at 0 (drawn, 1 s), at 5 (skipped: 1/5 > 5 %), at 25 (drawn, 0.5 s), at 26 skipped,
    # then close at 27 draws anyway.
    clock = SteppedClock([0.0, 1.0, 5.0, 25.0, 25.5, 26.0, 27.0, 27.2])
    live = LiveFigure(path=tmp_path / "live.png", mode="file", clock=clock)
    path = tmp_path / "live.png"
    live.write([loss(0, 4.0)])
    first = path.stat().st_mtime_ns
    live.write([loss(1, 3.0)])
    assert (live.throttle.draws, live.throttle.skipped) == (1, 1)
    live.write([loss(2, 2.0)])
    live.write([loss(3, 1.0)])
    assert (live.throttle.draws, live.throttle.skipped) == (2, 2)
    assert live.throttle.drawing_time == pytest.approx(1.5)
    live.close()
    assert live.throttle.draws == 3
    assert clock.times == []
    assert path.stat().st_mtime_ns >= first
    (ax,) = live.figure.axes
    assert ax.lines[0].get_ydata().tolist() == [4.0, 3.0, 2.0, 1.0]


def test_snapshot_is_a_png_of_the_current_state(tmp_path, records):
    live = LiveFigure(path=tmp_path / "snap.png", tags=["activations", "gradients"], max_panels=4)
    live.write(records)
    pixels = imread(tmp_path / "snap.png")
    assert pixels.shape == (540, 900, 4)  # 10 x 6 inches at 90 dpi
    assert not (tmp_path / "snap.png.partial").exists()
    titles = [ax.get_title() for ax in live.figure.axes]
    assert titles == [
        "activations: Dead units (fraction) of outputs",
        "activations: fc1 output",
        "activations: fc2 output",
        "activations: fc3 output",
    ]
    live.close()


def test_mode_and_path_are_checked(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        LiveFigure(path=tmp_path / "a.png", mode="window")
    with pytest.raises(ValueError, match="needs path"):
        LiveFigure(mode="file")
    if matplotlib.get_backend().lower() != "agg":
        pytest.skip("a GUI backend is available here")
    with pytest.raises(ValueError, match="give path="):
        LiveFigure()  # headless Agg, no notebook, no path
