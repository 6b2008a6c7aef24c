"""Optimizer checks: update-to-weight ratio out of its band, Adam denominators ruled by eps.

Both read records of the Optimizer lens (``update_ratio.last`` and ``eps_dominance.fraction``
at parameter sites such as ``"fc1:weight"``); without that lens they find nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from layerscope.health.base import Check, Series, StepView, median, short
from layerscope.health.findings import Finding, parameter_name, share_text
from layerscope.lenses import Optimizer
from layerscope.observation import site_kind


class UpdateRatioCheck(Check):
    """log10 of ||update|| / ||weight|| per weight, as a median over a window, out of band.

    Biases are judged from step ``bias_warmup`` on: most start at zero, and a parameter that
    starts at zero and moves by steps of one size has the ratio 1/k after k steps, above the
    band for the first few steps of any healthy run.

    Options: ``band`` ((-5.0, -0.5)): accepted log10 range. About -3 is the rule of thumb, but
    healthy small models trained with SGD+momentum or Adam were measured between -3.6 and
    -0.7, and a learning rate 100x too high between -1.6 and +1.6;
    ``window`` (5); ``bias_warmup`` (10): the first step whose bias ratios count (1/10 lies
    well inside the band).

    Example:
        >>> UpdateRatioCheck(band=(-4, -2)).band
        (-4, -2)

    """

    name = "update_ratio"
    options = {"band": (-5.0, -0.5), "window": 5, "bias_warmup": 10}
    reads = frozenset({Optimizer.UPDATE_RATIO})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        if not self.band[0] < self.band[1]:
            raise ValueError(
                f"Health: update_ratio.band must be (low, high) with low < high, got {self.band}"
            )
        self.series: Series
        self.add_series("series", self.window)

    def run(self, view: StepView) -> Iterable[Finding]:
        """A finding per parameter whose median log10 ratio leaves the band."""
        for r in view.find(Optimizer.UPDATE_RATIO):
            if r.step < self.bias_warmup and "bias" in site_kind(r.site):
                continue  # a bias growing from zero: 1/k after k steps, whatever the rate
            value = float(r.value)  # type: ignore[arg-type]
            if not math.isfinite(value):
                continue  # ‖Δw‖ / ‖w‖ of an all-zero parameter (a fresh bias) is undefined
            self.series.add(r.site, math.log10(value) if value > 0 else -math.inf)
            if not self.series.full(r.site):
                continue
            median = self.series.median(r.site)
            low, high = self.band
            evidence = {"log10_update_ratio": median}
            name = parameter_name(r.site)
            if median == -math.inf:
                message = f"{name} did not change over the last {self.window} updates"
            else:
                message = (
                    f"each update moves {name} by {share_text(10**median)} of its size "
                    f"(expected {share_text(10**low)} to {share_text(10**high)})"
                )
            if median > high:
                yield self.finding(
                    "update_ratio_high",
                    "warning",
                    view,
                    [r.site],
                    evidence,
                    message,
                    "lower the learning rate for it",
                )
            elif median < low:
                yield self.finding(
                    "update_ratio_low",
                    "info",
                    view,
                    [r.site],
                    evidence,
                    message,
                    "it barely learns: raise the learning rate, or check it is not meant to be "
                    "frozen",
                )


class EpsDominanceCheck(Check):
    """Adam-like optimizers whose denominators sqrt(v) + eps are mostly eps.

    The share counts the elements that had a gradient (an embedding row no batch uses is not
    ruled by eps: it does not move at all). A parameter whose gradient is round-off, its RMS
    (the root of its mean ``exp_avg_sq``) under ``noise`` times the median parameter's, is
    not judged: its gradient is zero in exact arithmetic (an attention key bias adds the same
    to every score of a query, which softmax ignores), and a smaller eps would only amplify
    the round-off.

    Options: ``fraction`` (0.5): the median share of eps-dominated elements that makes a
    finding; ``noise`` (1e-6); ``window`` (5).

    Example:
        >>> EpsDominanceCheck().fraction
        0.5

    """

    name = "eps_dominance"
    options = {"fraction": 0.5, "noise": 1e-6, "window": 5}
    reads = frozenset({Optimizer.EPS_DOMINANCE, Optimizer.EXP_AVG_SQ})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.series: Series
        self.add_series("series", self.window)

    def run(self, view: StepView) -> Iterable[Finding]:
        """A finding per parameter mostly ruled by eps over the window."""
        rms = {
            r.site: math.sqrt(r.value)  # type: ignore[arg-type]
            for r in view.find(Optimizer.EXP_AVG_SQ)
            if r.value > 0  # type: ignore[operator]
        }
        typical = median(rms.values()) if rms else 0.0
        for r in view.find(Optimizer.EPS_DOMINANCE):
            if r.site in rms and rms[r.site] < self.noise * typical:
                continue  # round-off of a gradient that is zero in exact arithmetic
            self.series.add(r.site, float(r.value))  # type: ignore[arg-type]
            share = self.series.median(r.site)
            if self.series.full(r.site) and share >= self.fraction:
                yield self.finding(
                    "eps_dominated",
                    "warning",
                    view,
                    [r.site],
                    {"eps_fraction": share},
                    f"{share:.0%} of {short(r.site)}'s Adam denominators are dominated by eps",
                    "its gradients are tiny: lower eps, or rescale the loss or the layer",
                )
