"""Gatherers install hooks on a model and turn what the hooks see into observations.

:data:`GATHERERS` lists every gatherer the Scope knows; a lens's site kinds must each be
produced by one of them.
"""

from layerscope.gatherers.attention import AttentionGatherer
from layerscope.gatherers.base import GatherContext, Gatherer, Observe
from layerscope.gatherers.forward import ForwardGatherer
from layerscope.gatherers.nonfinite import FiniteGatherer
from layerscope.gatherers.optimizer import OptimizerGatherer
from layerscope.gatherers.parameters import ParameterGatherer
from layerscope.gatherers.recurrent import RecurrentGatherer

#: Every gatherer, in the order the Scope installs them.
GATHERERS: tuple[type[Gatherer], ...] = (
    ForwardGatherer,
    ParameterGatherer,
    AttentionGatherer,
    RecurrentGatherer,
    OptimizerGatherer,
    FiniteGatherer,
)

__all__ = [
    "GATHERERS",
    "AttentionGatherer",
    "ForwardGatherer",
    "FiniteGatherer",
    "GatherContext",
    "Gatherer",
    "Observe",
    "OptimizerGatherer",
    "ParameterGatherer",
    "RecurrentGatherer",
]
