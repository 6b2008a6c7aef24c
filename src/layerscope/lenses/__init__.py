"""Lenses: what to look at, how to reduce it, when, and under which tag.

``default()`` is the set a one-line :func:`layerscope.watch` uses (with ``Optimizer`` when an
optimizer is watched); ``Attention`` and ``Recurrent`` are opt-in.
"""

from layerscope.lenses.attention import Attention
from layerscope.lenses.base import EmitContext, Lens, Needs
from layerscope.lenses.builtin import (
    Activations,
    DeadUnits,
    Distributions,
    GradientDeath,
    GradientNorms,
    Loss,
    OutputNorms,
    Parameters,
    default,
)
from layerscope.lenses.health import Health, NonFinite
from layerscope.lenses.optimizer import Optimizer
from layerscope.lenses.recurrent import Recurrent
from layerscope.lenses.statistics import ALL_STATISTICS, SiteWindow

__all__ = [
    "ALL_STATISTICS",
    "Activations",
    "Attention",
    "DeadUnits",
    "Distributions",
    "EmitContext",
    "GradientDeath",
    "GradientNorms",
    "Health",
    "Lens",
    "Loss",
    "Needs",
    "NonFinite",
    "Optimizer",
    "OutputNorms",
    "Parameters",
    "Recurrent",
    "SiteWindow",
    "default",
]
