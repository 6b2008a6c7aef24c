"""The built-in lenses, and the default set a one-line ``watch`` uses."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from torch import nn

from layerscope import stats
from layerscope.lenses.base import EmitContext, Lens, owns_parameters
from layerscope.lenses.statistics import statistic_key
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow
from layerscope.units import CONVOLUTIONS, has_weight_matrix, is_activation
from layerscope.vocabulary import LAST, Key

#: Modules whose output units are "active" only when positive.
RELU_LIKE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.RReLU, nn.Hardtanh)
#: Activation modules observed for activity by default, besides Linear and convolutions.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    *RELU_LIKE,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Softplus,
)
#: Modules with per-unit outputs: output features (Linear, and attention's embedding features,
#: the output of its projection) or channels (convolutions).
UNIT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.MultiheadAttention,
    *CONVOLUTIONS,
)


class Activations(Lens):
    """Statistics of module outputs: mean, spread, extremes, zeros and non-finite values.

    Example:
        >>> Activations(statistics=("mean", "max")).statistics
        ('mean', 'max')
    """

    default_tag = "activations"
    kinds = ("output",)
    default_statistics = ("mean", "std", "min", "max", "zero_fraction", "nonfinite_fraction")


class Distributions(Lens):
    """Accumulated statistics of outputs and weight gradients: median, IQR and histograms.

    These read the data again (an evenly strided sample of at most
    :data:`~layerscope.stats.tensors.DISTRIBUTION_SAMPLE` elements per tensor), so by default they
    run on every 50th step.

    Example:
        >>> Distributions().every
        50
    """

    default_tag = "distributions"
    kinds = ("output", "weight.grad")
    default_statistics = ("median", "iqr", "histogram")

    def __init__(self, *, every: int | None = 50, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(every=every, **kwargs)


class OutputNorms(Lens):
    """The norm of each module output per step (L2 and RMS by default).

    Example:
        >>> OutputNorms().statistics
        ('l2', 'rms')
    """

    default_tag = "output_norms"
    kinds = ("output",)
    default_statistics = ("l2", "rms")


class Parameters(Lens):
    """Statistics of parameter values (weights and biases) at each observed step.

    Example:
        >>> Parameters().kinds
        ('weight', 'bias')
    """

    default_tag = "parameters"
    kinds = ("weight", "bias")
    default_statistics = ("mean", "std", "l2")

    def selects(self, name: str, module: nn.Module) -> bool:
        """Modules with parameters of their own."""
        return owns_parameters(module) and super().selects(name, module)

    def default_choice(self, module: nn.Module) -> bool:
        """Every module with parameters of its own, containers too (MultiheadAttention)."""
        return True


class GradientNorms(Lens):
    """Gradient norms of weights, biases and module outputs, and how they add up.

    Besides the per-site norms it emits the global norm of all selected parameter gradients
    (site ``""``, quantity ``"global_l2"``) and each module's share of its square (site
    ``"<module>"``, quantity ``"share"``), the quantities that reveal vanishing and exploding
    gradients across depth.

    Args:
        of: which gradients: any of ``"weight"``, ``"bias"``, ``"output"``.

    Example:
        >>> GradientNorms(of=("weight",)).kinds
        ('weight.grad',)
    """

    default_tag = "gradients"
    default_statistics = ("l2",)
    #: The norm of each gradient (with the default statistics).
    L2 = statistic_key("l2")
    #: The norm of all selected parameter gradients together (site ``""``).
    GLOBAL_L2 = Key("global_l2", LAST)
    #: Each module's share of the square of the global norm, at the module's site.
    SHARE = Key("share", LAST)

    def __init__(self, *, of: Iterable[str] = ("weight", "bias", "output"), **kwargs: Any) -> None:  # noqa: ANN401
        of = tuple(of)
        for name in of:
            if name not in ("weight", "bias", "output"):
                raise ValueError(
                    f"GradientNorms: unknown gradient {name!r}; choose from weight, bias, output"
                )
        if not of:
            raise ValueError("GradientNorms: of= is empty; choose from weight, bias, output")
        self.kinds = tuple(f"{k}.grad" for k in of)
        super().__init__(**kwargs)

    def selects(self, name: str, module: nn.Module) -> bool:
        """Leaf modules, or modules with parameters of their own when only those are asked."""
        if "output.grad" not in self.kinds and not owns_parameters(module):
            return False
        return super().selects(name, module)

    def default_choice(self, module: nn.Module) -> bool:
        """The base choice, and other containers with parameters of their own."""
        return super().default_choice(module) or owns_parameters(module)

    def kinds_at(self, module: nn.Module) -> tuple[str, ...]:
        """At a container chosen by default, only the gradients of its own parameters."""
        if self.selects_by_default and not super().default_choice(module):
            return tuple(k for k in self.kinds if k != "output.grad")
        return self.kinds

    def emit(self, ctx: EmitContext, sites: Iterable[str]) -> list[Record]:
        """Per-site norms, then the global norm and each module's share of it."""
        sites = list(sites)
        out = super().emit(ctx, sites)
        squares: dict[str, float] = {}
        for site in sites:
            w = ctx.windows.get(site)
            if w is None or w.kind not in ("weight.grad", "bias.grad") or w.summary.size == 0:
                continue
            squares[w.module] = squares.get(w.module, 0.0) + w.summary.l2**2
        if squares:
            total = sum(squares.values())
            out.append(self.record(ctx, "", *self.GLOBAL_L2, math.sqrt(total)))
            for module in sorted(squares, key=lambda m: ctx.module_order.get(m, 0)):
                share = squares[module] / total if total > 0 else math.nan
                out.append(self.record(ctx, module or "model", *self.SHARE, share))
        return out


#: How an ActivityTracker state becomes plain bytes and back (``add_state``'s save and load).
TRACKER_PLAIN: dict[str, Any] = {
    "save": stats.ActivityTracker.serialize,
    "load": stats.ActivityTracker.deserialize,
}


def has_units(module: nn.Module) -> bool:
    """Whether `module`'s output has units whose activity means something, by what it does.

    Modules that own a weight matrix (linear maps and convolutions, other libraries' too, such
    as transformers' ``Conv1D``; lookup tables, ``nn.Embedding``, excepted), attention, and
    unit-wise activations (:func:`~layerscope.units.is_activation`).
    """
    if isinstance(module, (*UNIT_MODULES, *ACTIVATIONS)):
        return True
    if isinstance(module, nn.Embedding):
        return False
    return has_weight_matrix(module) or is_activation(module)


class _UnitActivity(Lens):
    """Shared machinery of DeadUnits and GradientDeath: an ActivityTracker per site.

    Without ``modules=`` they select the modules that have units (:func:`has_units`), among
    the leaf modules or those named by ``names=`` / chosen by ``where=``.
    """

    default_statistics = ("mean",)  # unused; the lens emits its own quantities
    #: The share of units active on the step.
    ACTIVE_FRACTION = Key("active", "fraction")
    #: The share and number of units inactive over the whole window (once it is full).
    DEAD_FRACTION = Key("dead", "fraction")
    DEAD_COUNT = Key("dead", "count")

    def __init__(self, *, window: int = 20, **kwargs: Any) -> None:  # noqa: ANN401
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"{type(self).__name__}: window must be a positive integer")
        self.window = window
        self.trackers: dict[str, stats.ActivityTracker]
        # site -> its units' activity over the window; two merge into the union of their steps
        self.add_state("trackers", {}, merge="merge", keyed=True, **TRACKER_PLAIN)
        super().__init__(**kwargs)

    def selects(self, name: str, module: nn.Module) -> bool:
        """Modules with units (:func:`has_units`) unless ``modules=`` names the types."""
        if self.modules is None and not has_units(module):
            return False
        return super().selects(name, module)

    def needs(self, kind: str) -> Needs:
        """Per-unit activity counts."""
        return Needs(activity=True)

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """Fraction of units active this step; dead count and fraction over the window."""
        active = w.summary.channel_active
        if active is None or active.size == 0:
            return []
        units = active.size
        tracker = self.trackers.get(w.site)
        if tracker is None or tracker.units != units:
            tracker = self.trackers[w.site] = stats.ActivityTracker(units, self.window)
        tracker.update(ctx.step, active)
        step, epoch, tag, site = ctx.step, ctx.epoch, self.tag, w.site
        fraction = float(np.count_nonzero(active) / units)
        out = [Record(step, epoch, tag, site, *self.ACTIVE_FRACTION, fraction)]
        if tracker.steps_observed() >= self.window:
            dead = tracker.dead_count()
            # dead / units is the tracker's dead_fraction() to the bit, without a second call
            out.append(Record(step, epoch, tag, site, *self.DEAD_FRACTION, dead / units))
            out.append(Record(step, epoch, tag, site, *self.DEAD_COUNT, float(dead)))
        return out


class DeadUnits(_UnitActivity):
    """Units (output features, channels) that stay inactive over a window of observed steps.

    A unit of a ReLU-like module is active when positive; of any other module when non-zero.
    Before ``window`` steps have been observed nothing is called dead; ``active.fraction`` is
    reported from the first step.

    Example:
        >>> DeadUnits(window=50).window
        50
    """

    default_tag = "activity"
    kinds = ("output",)


class GradientDeath(_UnitActivity):
    """Units whose output gradient stays exactly zero over a window of observed steps.

    Example:
        >>> GradientDeath().kinds
        ('output.grad',)
    """

    default_tag = "gradient_activity"
    kinds = ("output.grad",)


class Loss(Lens):
    """The loss of each step; for a vector of per-sample losses, also its spread.

    Records: site ``""``, quantity ``"loss"``, statistic ``"last"`` (the mean of a vector), and
    for vectors ``"std"``, ``"min"``, ``"max"``.

    Example:
        >>> Loss().tag
        'loss'
    """

    default_tag = "loss"
    kinds = ("loss",)
    #: The loss of the step (the mean of a vector of per-sample losses), and their spread.
    LOSS = Key("loss", LAST)
    LOSS_STD = Key("loss", "std")
    LOSS_MIN = Key("loss", "min")
    LOSS_MAX = Key("loss", "max")

    def selects(self, name: str, module: nn.Module) -> bool:
        """The loss is not a module's: the lens selects the whole model once."""
        return name == ""

    def needs(self, kind: str) -> Needs:
        """The loss's mean and spread, whatever ``statistics`` says."""
        return Needs()

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """The loss value and, for per-sample losses, its spread."""
        s = w.summary
        out = [self.record(ctx, "", *self.LOSS, s.mean)]
        if s.size > 1:
            std = math.sqrt(s.variance) if s.count else math.nan
            out += [
                self.record(ctx, "", *self.LOSS_STD, std),
                self.record(ctx, "", *self.LOSS_MIN, s.min),
                self.record(ctx, "", *self.LOSS_MAX, s.max),
            ]
        return out
