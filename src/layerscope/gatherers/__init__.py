"""Gatherers install hooks on a model and turn what the hooks see into observations.

:data:`GATHERERS` lists every gatherer the Scope knows; a lens's site kinds must each be
produced by one of them.
"""

from layerscope.gatherers.base import GatherContext, Gatherer, Observe
from layerscope.gatherers.forward import ForwardGatherer
from layerscope.gatherers.parameters import ParameterGatherer

#: Every gatherer, in the order the Scope installs them.
GATHERERS: tuple[type[Gatherer], ...] = (ForwardGatherer, ParameterGatherer)

__all__ = ["GATHERERS", "ForwardGatherer", "GatherContext", "Gatherer", "Observe", "ParameterGatherer"]
