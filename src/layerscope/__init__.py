"""layerscope: see what happens inside a PyTorch model while it trains.

Attach it in one line (``layerscope.watch(model, optimizer=opt)``); it gathers what every selected
layer does on the forward and backward pass, reduces it with the C++ streaming statistics of
:mod:`layerscope.stats`, groups the results through lenses and hands them to sinks.
"""

from layerscope import health, lenses, stats
from layerscope.presets import default_lenses
from layerscope.records import HistogramValue, Record
from layerscope.scope import Scope, watch

__version__ = "0.1.0"

__all__ = [
    "HistogramValue",
    "Record",
    "Scope",
    "__version__",
    "default_lenses",
    "health",
    "lenses",
    "stats",
    "watch",
]
