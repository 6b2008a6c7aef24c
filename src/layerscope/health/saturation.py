"""Saturation: tanh / sigmoid pinned near their limits, GELU / SiLU stuck in the negative tail.

Activations are told apart by :func:`~layerscope.units.activation_family`: torch's classes and
other libraries' alike (transformers' ``NewGELUActivation`` is a GELU).

The share of elements beyond a level is not in the fused summary, so the check asks the
reducer for threshold counts (:attr:`layerscope.lenses.Needs.exceed`) on the sites of those
activations only, on the steps the Health lens is active: one extra pass of the C++ kernel per
level (a count of ``|x| > 0.97`` for tanh; of ``x > 0.97`` and ``x > 0.03`` for sigmoid; of
``x > -tail`` and ``x > 0`` for GELU/SiLU), or one torch comparison on the device.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from layerscope.health.base import Check, Series, StepView, short
from layerscope.health.findings import Finding
from layerscope.reduce.contract import NOTHING, Needs, SiteWindow
from layerscope.units import activation_family


class SaturationCheck(Check):
    """Squashing activations whose outputs sit at their limits, where the gradient vanishes.

    Options:
        tanh_limit (0.97): a tanh output beyond ±limit is saturated.
        sigmoid_band ((0.03, 0.97)): a sigmoid output outside it is saturated.
        tail (0.01): a GELU/SiLU/Mish output in ``(-tail, 0]`` sits in the flat negative tail.
        fraction (0.25): the saturated share of a tanh/sigmoid layer's outputs that makes a
            finding (healthy layers sit well under 1 %).
        tail_fraction (0.5): the share in the negative tail that makes a finding.
        window (5): observed steps averaged.

    Example:
        >>> SaturationCheck(tanh_limit=0.99).tanh_limit
        0.99

    """

    name = "saturation"
    options = {
        "tanh_limit": 0.97,
        "sigmoid_band": (0.03, 0.97),
        "tail": 0.01,
        "fraction": 0.25,
        "tail_fraction": 0.5,
        "window": 5,
    }
    reads = frozenset()  # the windows' threshold counts only

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        low, high = self.sigmoid_band
        if not 0 < low < high < 1:
            raise ValueError(
                "Health: saturation.sigmoid_band must be 0 < low < high < 1, "
                f"got {self.sigmoid_band}"
            )
        if not 0 < self.tanh_limit < 1 or self.tail <= 0:
            raise ValueError("Health: saturation.tanh_limit must be in (0, 1) and tail positive")
        self.series: Series
        self.add_series("series", self.window)
        self._levels_of: dict[type[nn.Module], frozenset[tuple[float, bool]]] = {}

    def _levels(self, module_type: type[nn.Module]) -> frozenset[tuple[float, bool]]:
        """The threshold counts read at outputs of `module_type` (empty: none, not checked)."""
        levels = self._levels_of.get(module_type)
        if levels is None:
            levels = self._levels_of[module_type] = self._levels_for(module_type)
        return levels

    def _levels_for(self, module_type: type[nn.Module]) -> frozenset[tuple[float, bool]]:
        family = activation_family(module_type)
        if family == "tanh":
            return frozenset({(float(self.tanh_limit), True)})
        if family == "sigmoid":
            return frozenset((float(level), False) for level in self.sigmoid_band)
        if family == "smooth_relu":
            return frozenset({(-float(self.tail), False), (0.0, False)})
        return frozenset()

    def needs_at(self, module: str, module_type: type[nn.Module], kind: str) -> Needs:
        """Threshold counts on the outputs of squashing and smooth-ReLU activations."""
        if kind != "output":
            return NOTHING
        return Needs(exceed=self._levels(module_type), moments=False)

    def saturated(self, w: SiteWindow, module_type: type[nn.Module]) -> float | None:
        """The saturated share of the window's elements, or None when not counted."""
        levels, counts, size = self._levels(module_type), w.exceed or {}, w.summary.size
        if not levels or not size or any(key not in counts for key in levels):
            return None
        family = activation_family(module_type)
        if family == "tanh":
            return counts[(float(self.tanh_limit), True)] / size
        if family == "sigmoid":
            low, high = (float(v) for v in self.sigmoid_band)
            return (counts[(high, False)] + w.summary.count - counts[(low, False)]) / size
        return (counts[(-float(self.tail), False)] - counts[(0.0, False)]) / size

    def run(self, view: StepView) -> Iterable[Finding]:
        """A finding per activation whose saturated share, averaged over the window, is high."""
        for site, w in view.windows.items():
            module_type = view.module_types.get(w.module)
            if w.kind != "output" or module_type is None:
                continue
            share = self.saturated(w, module_type)
            if share is None:
                continue
            self.series.add(site, share)
            values = self.series.values(site)
            mean = sum(values) / len(values)
            tail = activation_family(module_type) == "smooth_relu"
            if not self.series.full(site) or mean < (self.tail_fraction if tail else self.fraction):
                continue
            kind = "negative_tail" if tail else "saturation"
            message = (
                f"{mean:.0%} of {short(site)}'s outputs sit in the flat negative tail"
                if tail
                else f"{mean:.0%} of {short(site)}'s {module_type.__name__} outputs are saturated"
            )
            suggestion = (
                "its inputs are too large: scale the init of the layer before it down, "
                "normalise its input, or lower the learning rate"
            )
            yield self.finding(
                kind, "warning", view, [site], {"saturated_fraction": mean}, message, suggestion
            )
