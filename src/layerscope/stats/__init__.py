"""layerscope.stats: the public face of the C++ statistics engine (``layerscope._core``).

Every function and class here reads float32, float64, float16 and bfloat16 buffers — numpy arrays
and CPU torch tensors — in place, without copying. Every state type merges exactly and
serializes to versioned bytes.
"""

from __future__ import annotations

from layerscope.stats.activity import ActivityTracker
from layerscope.stats.histogram import Histogram
from layerscope.stats.moments import ChannelMoments, Moments
from layerscope.stats.quantiles import ExactQuantiles, QuantileSketch
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.summary import Summary, summarize

__all__: list[str] = [
    "ActivityTracker",
    "ChannelMoments",
    "ExactQuantiles",
    "Histogram",
    "Moments",
    "QuantileSketch",
    "SiteSummary",
    "Summary",
    "summarize",
]
