"""Lenses: what to look at, how to reduce it, when, and under which tag.

:func:`layerscope.default_lenses` is the set a one-line :func:`layerscope.watch` uses (these
with ``Optimizer`` when an optimizer is watched, and the Health lens of :mod:`layerscope.health`);
``Attention`` and ``Recurrent`` are opt-in.
"""

from layerscope.lenses.attention import Attention
from layerscope.lenses.base import EmitContext, Lens
from layerscope.lenses.builtin import (
    Activations,
    DeadUnits,
    Distributions,
    GradientDeath,
    GradientNorms,
    Loss,
    OutputNorms,
    Parameters,
)
from layerscope.lenses.optimizer import Optimizer
from layerscope.lenses.recurrent import Recurrent
from layerscope.lenses.statistics import ALL_STATISTICS
from layerscope.reduce.contract import Needs, SiteWindow

__all__ = [
    "ALL_STATISTICS",
    "Activations",
    "Attention",
    "DeadUnits",
    "Distributions",
    "EmitContext",
    "GradientDeath",
    "GradientNorms",
    "Lens",
    "Loss",
    "Needs",
    "Optimizer",
    "OutputNorms",
    "Parameters",
    "Recurrent",
    "SiteWindow",
]
