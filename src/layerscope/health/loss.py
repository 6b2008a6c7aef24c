"""Loss checks: spikes against the recent median, divergence from the start, plateaus."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from layerscope.health.base import Check, Series, StepView, Stretches, median
from layerscope.health.findings import Finding
from layerscope.lenses import Loss


class LossCheck(Check):
    """Reads the Loss lens's ``loss.last`` record each step.

    * spike: a loss above ``spike_factor`` times the median of the last ``window`` losses,
      more than ``spike_mads`` median absolute deviations above it, and above it by more than
      ``spike_jump`` times the first loss (after ``min_steps``). The last condition keeps the
      ordinary noise of a small, converged loss (0.1 -> 0.4) from counting;
    * divergence: the median of the last ``min_steps`` losses above ``divergence_factor``
      times the first loss seen;
    * plateau: over the last two ``plateau_window``-long stretches, the median improved by
      less than ``plateau_tolerance`` (relative). Reported as info.

    Example:
        >>> LossCheck(spike_factor=3).spike_factor
        3

    """

    name = "loss"
    options = {
        "window": 20,
        "min_steps": 10,
        "spike_factor": 2.0,
        "spike_mads": 6.0,
        "spike_jump": 1.0,
        "divergence_factor": 2.0,
        "plateau_window": 50,
        "plateau_tolerance": 0.01,
    }
    reads = frozenset({Loss.LOSS})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.recent: Series
        self.latest: Series
        self.add_series("recent", self.window)
        self.add_series("latest", self.min_steps)
        # The plateau's two stretches: the newer pushes its oldest loss into the older.
        size = int(self.plateau_window)
        self.plateau: Stretches
        self.add_state(
            "plateau",
            Stretches(size),
            merge="merge",
            save=Stretches.values,
            load=functools.partial(Stretches.from_values, size),
        )
        self.first: float | None  # the first loss of the run
        self.add_state("first", None, merge="first")

    def run(self, view: StepView) -> Iterable[Finding]:
        """Spike, divergence and plateau findings, each when it applies."""
        for r in view.find(Loss.LOSS):
            if r.site:
                continue
            loss = float(r.value)  # type: ignore[arg-type]
            history = self.recent.values("")
            self.recent.add("", loss)
            self.latest.add("", loss)
            self.plateau.add(loss)
            if self.first is None:
                self.first = loss
            yield from self._spike(view, loss, history)
            yield from self._divergence(view)
            yield from self._plateau(view)

    def _spike(self, view: StepView, loss: float, history: list[float]) -> Iterable[Finding]:
        if len(history) < self.min_steps:
            return
        middle = median(history)
        mad = median(abs(v - middle) for v in history)
        jump = max(self.spike_mads * mad, self.spike_jump * (self.first or 0.0))
        if middle > 0 and loss > self.spike_factor * middle and loss - middle > jump:
            yield self.finding(
                "loss_spike",
                "warning",
                view,
                [],
                {"loss": loss, "median": middle},
                f"the loss jumped to {loss:.4g} from a recent median of {middle:.4g}",
                "look for a bad batch; lower the learning rate or clip gradients",
            )

    def _divergence(self, view: StepView) -> Iterable[Finding]:
        first = self.first
        if first is None or first <= 0 or not self.latest.full(""):
            return
        recent = self.latest.median("")
        if recent > self.divergence_factor * first:
            yield self.finding(
                "loss_divergence",
                "error",
                view,
                [],
                {"loss": recent, "first_loss": first},
                f"the loss diverges: {recent:.4g} against {first:.4g} at the start",
                "lower the learning rate (by 10x), add warmup or clip gradients",
            )

    def _plateau(self, view: StepView) -> Iterable[Finding]:
        if not self.plateau.older.full():
            return
        before, after = self.plateau.older.median(), self.plateau.newer.median()
        if before > 0 and (before - after) / before < self.plateau_tolerance:
            yield self.finding(
                "loss_plateau",
                "info",
                view,
                [],
                {"loss": after, "before": before},
                f"the loss stopped improving: median {after:.4g} against {before:.4g} "
                f"{self.plateau_window} steps earlier",
                "raise or decay the learning rate, or stop: the model may have converged",
            )
