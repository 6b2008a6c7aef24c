"""Gatherers install hooks on a model and turn what the hooks see into observations."""

from layerscope.gatherers.forward import ForwardGatherer
from layerscope.gatherers.parameters import ParameterGatherer

__all__ = ["ForwardGatherer", "ParameterGatherer"]
