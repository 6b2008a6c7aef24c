"""LiveFigure: a figure that follows training, redrawn in place and throttled.

In a Jupyter kernel it redraws through an IPython display handle (a PNG replaced in place);
with a GUI backend it redraws a pyplot window; headless it writes PNG snapshots to a path.
Drawing is throttled so that it takes at most a set share of the wall time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from layerscope.records import Record
from layerscope.sinks._optional import require
from layerscope.sinks.report import XS, Panel, draw_panel, plan_panels

MODES: tuple[str, ...] = ("auto", "notebook", "gui", "file")
_NON_GUI_BACKENDS = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template", "module://")


class DrawThrottle:
    """Keeps drawing under a share of wall time.

    After a draw that took ``d`` seconds, the next may start only ``d / budget`` seconds after
    the last one started.

    Times are passed in, so the rule can be checked without a clock.

    Args:
        budget: the largest share of wall time spent drawing, in (0, 1].

    Example:
        >>> t = DrawThrottle(budget=0.05)
        >>> t.ready(0.0)
        True
        >>> t.drawn(start=0.0, end=0.5)  # half a second: wait 10 s from the start
        >>> t.ready(9.0), t.ready(10.0)
        (False, True)

    """

    def __init__(self, budget: float = 0.05) -> None:
        if not 0.0 < budget <= 1.0:
            raise ValueError(f"DrawThrottle: budget must be in (0, 1], got {budget}")
        self.budget = budget
        self.last_start: float | None = None
        self.last_duration = 0.0
        self.draws = 0
        self.skipped = 0
        self.drawing_time = 0.0

    def ready(self, now: float) -> bool:
        """Whether a draw starting at ``now`` keeps the last draw under the budget."""
        if self.last_start is None:
            return True
        return self.last_duration <= self.budget * (now - self.last_start)

    def drawn(self, start: float, end: float) -> None:
        """Note a draw that ran from ``start`` to ``end``."""
        self.last_start = start
        self.last_duration = max(0.0, end - start)
        self.draws += 1
        self.drawing_time += self.last_duration


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LiveFigure:
    """A sink that redraws one figure of the run as records arrive.

    Each tag's line, band and stack panels (as in the report, without heatmaps and depth
    profiles, which cost more to draw) share one figure, up to ``max_panels``.

    Args:
        path: PNG file for snapshots; needed headless (``mode="file"``).
        mode: ``"notebook"``, ``"gui"``, ``"file"``, or ``"auto"`` (notebook if in a Jupyter
            kernel, else file if ``path`` is given, else gui if the Matplotlib backend is
            interactive).
        budget: the largest share of wall time spent drawing (default 5 %); writes that come
            too soon after a draw skip their redraw.
        tags: only these tags; all when None.
        max_panels: at most this many panels.
        x: ``"step"`` or ``"epoch"``.
        clock: seconds, monotonic; ``time.perf_counter`` unless a test injects one.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     live = LiveFigure(path=os.path.join(d, "live.png"))
        ...     live.write([Record(0, 0, "loss", "", "loss", "last", 1.0)])
        ...     live.close()
        ...     os.path.exists(os.path.join(d, "live.png")), live.throttle.draws
        (True, 2)

    """

    def __init__(
        self,
        path: str | Path | None = None,
        mode: str = "auto",
        budget: float = 0.05,
        tags: Sequence[str] | None = None,
        max_panels: int = 6,
        x: str = "step",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"LiveFigure: mode must be one of {MODES}, got {mode!r}")
        if x not in XS:
            raise ValueError(f"LiveFigure: x must be one of {XS}, got {x!r}")
        if max_panels < 1:
            raise ValueError(f"LiveFigure: max_panels must be at least 1, got {max_panels}")
        matplotlib = require("matplotlib", "plot", "LiveFigure")
        if mode == "auto":
            if _in_notebook():
                mode = "notebook"
            elif path is not None:
                mode = "file"
            elif not matplotlib.get_backend().lower().startswith(_NON_GUI_BACKENDS):
                mode = "gui"
            else:
                raise ValueError(
                    "LiveFigure: no notebook and no GUI backend here; give path='live.png' "
                    "to write PNG snapshots instead"
                )
        if mode == "file" and path is None:
            raise ValueError("LiveFigure: mode='file' needs path, the PNG file to write")
        self.mode = mode
        self.path = None if path is None else Path(path)
        self.throttle = DrawThrottle(budget)
        self.tags = None if tags is None else tuple(tags)
        self.max_panels = max_panels
        self.x = x
        self.clock = clock
        self.records: list[Record] = []
        self._handle: Any = None
        if mode == "gui":
            pyplot = require("matplotlib.pyplot", "plot", "LiveFigure")
            self.figure = pyplot.figure(figsize=(10, 6))
            pyplot.show(block=False)
        else:
            self.figure = require("matplotlib.figure", "plot", "LiveFigure").Figure(figsize=(10, 6))

    def panels(self) -> list[tuple[str, Panel]]:
        """List the (tag, panel) pairs the figure shows now."""
        chosen: list[tuple[str, Panel]] = []
        tags = dict.fromkeys(r.tag for r in self.records)
        for tag in tags if self.tags is None else self.tags:
            rows = [r for r in self.records if r.tag == tag]
            for panel in plan_panels(rows, profile_min_layers=10**9):
                if panel.kind in ("bands", "lines", "stack"):
                    chosen.append((tag, panel))
        return chosen[: self.max_panels]

    def write(self, records: Sequence[Record]) -> None:
        """Keep the records; redraw if the throttle allows."""
        self.records.extend(records)
        now = self.clock()
        if self.throttle.ready(now):
            self._draw(now)
        else:
            self.throttle.skipped += 1

    def close(self) -> None:
        """Draw the final state, whatever the throttle says."""
        if self.records:
            self._draw(self.clock())

    def _draw(self, start: float) -> None:
        fig = self.figure
        fig.clear()
        panels = self.panels()
        ncols = 1 if len(panels) <= 2 else 2
        nrows = max(1, -(-len(panels) // ncols))
        shared = None
        for i, (tag, panel) in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, i + 1, sharex=shared)
            shared = shared or ax
            draw_panel(ax, panel, self.x)
            ax.set_title(f"{tag}: {panel.title}", fontsize="small")
            ax.set_xlabel(self.x, fontsize="small")
        fig.subplots_adjust(hspace=0.6, wspace=0.25)
        self._show()
        self.throttle.drawn(start, self.clock())

    def _show(self) -> None:
        if self.mode == "gui":
            self.figure.canvas.draw_idle()
            self.figure.canvas.flush_events()
            return
        if self.mode == "file":
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            self.figure.savefig(partial, format="png", dpi=90)
            os.replace(partial, self.path)  # readers never see a half-written snapshot
            return
        import io

        display = require("IPython.display", "plot", "LiveFigure in a notebook")
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        image = display.Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display.display(image, display_id=True)
        else:
            self._handle.update(image)
