"""Gradient checks: vanishing / exploding across depth, and spikes of the global norm over time."""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import nn

from layerscope.health.base import Check, Series, StepView, median, short
from layerscope.health.findings import Finding, times_text
from layerscope.lenses import GradientNorms
from layerscope.observation import site_module

#: Normalisation layers: their weight gradients follow a different scale, so depth ignores them.
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


class DepthGradientsCheck(Check):
    """The first layers' weight-gradient norms against the last layer's, in module order.

    Reads the GradientNorms lens's ``l2.last`` records of ``*:weight.grad`` sites (norm layers
    aside). The gradient vanishes on its way down when every one of the first quarter of the
    layers gets less than ``10**log10_vanishing`` of the last layer's; it explodes when every
    one gets more than ``10**log10_exploding`` of it; each as a median over the window. A
    single early layer whose gradient is small by construction (an attention query or key
    projection at initialisation, while the attention is near uniform; the first layer left
    after frozen embeddings) is not the gradient vanishing.

    Options: ``log10_vanishing`` (-4), ``log10_exploding`` (4), ``window`` (5),
    ``min_layers`` (3).

    Example:
        >>> DepthGradientsCheck(log10_vanishing=-3).log10_vanishing
        -3

    """

    name = "depth_gradients"
    options = {"log10_vanishing": -4.0, "log10_exploding": 4.0, "window": 5, "min_layers": 3}
    reads = frozenset({GradientNorms.L2})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.largest: Series  # log10 of the first layers' largest / last
        self.smallest: Series  # ... and of their smallest / last
        self.add_series("largest", self.window)
        self.add_series("smallest", self.window)

    def run(self, view: StepView) -> Iterable[Finding]:
        """At most one finding per step: vanishing or exploding, naming first and last layer."""
        norms: dict[str, float] = {}
        for r in view.find(GradientNorms.L2):
            if not r.site.endswith("weight.grad"):  # most are output and bias norms
                continue
            module_type = view.module_types.get(site_module(r.site))
            if not (module_type and issubclass(module_type, NORMS)):
                norms[r.site] = float(r.value)  # type: ignore[arg-type]
        if len(norms) < self.min_layers:
            return
        ordered = sorted(norms, key=view.depth)
        first, last = ordered[0], ordered[-1]
        early = [norms[site] for site in ordered[: max(1, (len(ordered) - 1) // 4)]]
        if min(early) <= 0 or norms[last] <= 0:
            return
        self.largest.add("", math.log10(max(early) / norms[last]))
        self.smallest.add("", math.log10(min(early) / norms[last]))
        if not self.largest.full(""):
            return
        largest, smallest = self.largest.median(""), self.smallest.median("")
        if largest < self.log10_vanishing:
            ratio = largest
        elif smallest > self.log10_exploding:
            ratio = smallest
        else:
            return
        evidence = {"log10_first_over_last": ratio, "first": norms[first], "last": norms[last]}
        if ratio < 0:
            yield self.finding(
                "vanishing_gradients",
                "warning",
                view,
                [first, last],
                evidence,
                f"the gradient reaching {short(first)} is {times_text(10**-ratio)} smaller "
                f"than {short(last)}'s",
                "use ReLU-like activations, residual connections, normalisation or a better init",
            )
        else:
            yield self.finding(
                "exploding_gradients",
                "warning",
                view,
                [first, last],
                evidence,
                f"the gradient reaching {short(first)} is {times_text(10**ratio)} larger "
                f"than {short(last)}'s",
                "lower the init scale, add normalisation, or clip gradients",
            )


class GradientSpikeCheck(Check):
    """The global gradient norm against the median of its recent values.

    Reads the GradientNorms lens's ``global_l2.last`` record. A value above ``factor`` times
    the median of the last ``window`` values (once ``min_steps`` are known) is a spike; the
    median of the last few above ``growth`` times the median of the first few is sustained
    growth: exploding gradients over time.

    Options: ``factor`` (10), ``growth`` (1000), ``window`` (20), ``min_steps`` (5).

    Example:
        >>> GradientSpikeCheck(factor=5).factor
        5

    """

    name = "gradient_spikes"
    options = {"factor": 10.0, "growth": 1000.0, "window": 20, "min_steps": 5}
    reads = frozenset({GradientNorms.GLOBAL_L2})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.recent: Series
        self.add_series("recent", self.window)
        # The first min_steps values of the run: two pieces' merge keeps the earlier's first.
        self.early: list[float]
        self.add_state("early", [], merge="cat")
        self.latest: Series
        self.add_series("latest", self.min_steps)

    def run(self, view: StepView) -> Iterable[Finding]:
        """A spike finding, and an exploding-over-time finding, each when it applies."""
        for r in view.find(GradientNorms.GLOBAL_L2):
            value = float(r.value)  # type: ignore[arg-type]
            known = self.recent.count("")
            middle = self.recent.median("")
            self.recent.add("", value)
            if len(self.early) < self.min_steps:
                self.early.append(value)
            self.latest.add("", value)
            if known >= self.min_steps and middle > 0 and value > self.factor * middle:
                yield self.finding(
                    "gradient_spike",
                    "warning",
                    view,
                    [],
                    {"global_l2": value, "median": middle},
                    f"the global gradient norm jumped to {value:.3g}, {value / middle:.0f}x its "
                    "recent median",
                    "look for a bad batch; clip gradients or lower the learning rate",
                )
            first = self.early[: self.min_steps]
            early = median(first) if first else math.nan
            if len(first) == self.min_steps and known >= 2 * self.min_steps and early > 0:
                recent = self.latest.median("")
                if recent > self.growth * early:
                    yield self.finding(
                        "exploding_gradients",
                        "error",
                        view,
                        [],
                        {"global_l2": recent, "early": early},
                        f"the global gradient norm grew from {early:.3g} to {recent:.3g}",
                        "lower the learning rate, clip gradients, or add normalisation",
                    )
