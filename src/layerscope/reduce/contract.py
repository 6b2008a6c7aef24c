"""The reduce stage's contract: what a lens asks of a site, and what a site's step reduces to.

Lenses declare :class:`Needs` per site; the window builder computes exactly that and hands each
lens a :class:`SiteWindow` per observed site and step. Both live here, below the lenses, so that
the stages above read the contract without reaching into one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from layerscope.records import HistogramValue
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.vectors import VectorRows


@dataclass(frozen=True)
class Needs:
    """What a site's reducer must compute for the lenses looking at it on a step.

    ``values``: keep the observed tensor itself (a small vector a gatherer already reduced) in
    :attr:`SiteWindow.values`, besides its summary.
    ``exceed`` holds ``(level, absolute)`` pairs: count the elements with ``|x| > level``
    (absolute) or ``x > level``; the counts reach the lens as ``SiteWindow.exceed``.
    ``moments``: the summary's mean, variance, extremes, L1 norm and zero count. Without them
    (every lens at the site reads only the L2 norm and the element counts, as the gradient
    norms do) a CPU tensor is read for its sum of squares alone (half the time of the full
    pass while the tensor is in the caches), and its summary is *norms-only*: ``size``,
    ``count``, ``nonfinite`` and ``l2`` hold, ``mean``, ``m2``, ``min``, ``max`` and ``l1``
    are NaN and ``zeros`` 0.
    """

    quantiles: bool = False
    histogram: bool = False
    activity: bool = False
    values: bool = False
    exceed: frozenset[tuple[float, bool]] = frozenset()
    moments: bool = True

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.quantiles or other.quantiles,
            self.histogram or other.histogram,
            self.activity or other.activity,
            self.values or other.values,
            self.exceed | other.exceed,
            self.moments or other.moments,
        )


#: What no lens needs: the start of an OR over the lenses at a site.
NOTHING = Needs(moments=False)


@dataclass
class SiteWindow:
    """What one site's observations of one step reduced to.

    ``quantiles`` maps each level of :data:`~layerscope.stats.tensors.QUANTILE_LEVELS` to its value
    when a lens asked for quantiles (``quantile_state`` is the mergeable state they were read
    from); ``histogram`` is set when one asked for a histogram.
    ``values`` holds the observed tensor itself, as a float32 array, when a lens asked for it
    (:attr:`Needs.values`): gatherers that reduce on their own (attention heads, timesteps) hand
    over such small vectors, each with the number of items it summarizes and, in
    ``values_rows``, how each row merges (a mean weighted by the counts, an L2 norm of the norms,
    a pooled standard deviation; without rows every element is a count-weighted mean). The step's
    vectors are merged by those rules. ``values_count`` holds the counts, added up, element by
    element (the weight of ``values`` in any further merge).
    ``exceed`` maps each ``(level, absolute)`` of :attr:`Needs.exceed` to its element count.
    """

    site: str
    module: str
    kind: str
    summary: SiteSummary
    quantiles: dict[float, float] | None = None
    histogram: HistogramValue | None = None
    quantile_state: Any = None
    values: np.ndarray | None = None
    values_count: np.ndarray | None = None
    values_rows: VectorRows | None = None
    exceed: dict[tuple[float, bool], int] | None = None
