"""What a site's observations reduce to: :class:`SiteSummary`, one type for every path.

The CPU path (the fused C++ kernel), the device path (torch ops, packed in
``SiteSummary.fields`` order and read back with :meth:`SiteSummary.from_packed`) and a few host
numbers all give a SiteSummary; the scope merges those of several calls, steps and ranks with
its exact merge.
"""

from __future__ import annotations

from layerscope import _core

SiteSummary = _core.SiteSummary
SiteSummary.__doc__ = """Statistics of one or more observations of a site, with an exact merge.

Read-only; build one from named fields (keywords only: the defaults are the empty summary) or
with ``from_packed(values, channel_active=None)`` from float64 values in ``fields`` order;
merge two with ``a.merge(b)`` (a new summary) or many with ``SiteSummary.merge_all(seq)``.
The merge is exact and count-weighted, as if every element had been summarized at once:
counts and ``l1`` add, ``mean`` and ``m2`` combine by Chan's formula (means and norms are
never averaged), ``min``/``max`` combine, ``l2`` combines as ``hypot``, per-unit counts add.
Instances pickle (the distributed merge gathers them across ranks; checkpoints may hold them).

Attributes:
    size: all elements. count: finite elements.
    mean, m2, variance, std: mean of the finite values, sum of squared deviations from it,
        population variance ``m2 / count`` and its square root.
    min, max: extrema of the finite values. l1, l2: sum of ``|x|`` and Euclidean norm of them.
    zeros, nonfinite: elements equal to zero; NaN and +/-Inf elements (in no other field).
    channel_active: active elements per unit (a read-only int64 array), None for a tensor
        observed without a unit axis.
    fields: the names of the scalar fields, in the order of packed layouts (``from_packed``).

With no finite element (``count == 0``), ``mean``, ``min``, ``max``, ``variance`` and ``std``
are NaN and ``m2``, ``l1`` and ``l2`` are 0.

Example:
    >>> a = SiteSummary(size=2, count=2, mean=1.0, m2=2.0, min=0.0, max=2.0, l1=2.0, l2=2.0,
    ...                 zeros=1)
    >>> b = SiteSummary(size=6, count=6, mean=5.0, m2=0.0, min=5.0, max=5.0, l1=30.0,
    ...                 l2=6 ** 0.5 * 5)
    >>> c = a.merge(b)
    >>> c.count, c.mean, c.m2, c.min, c.max, c.l1
    (8, 4.0, 26.0, 0.0, 5.0, 32.0)
    >>> SiteSummary.fields[:4]
    ('size', 'count', 'mean', 'm2')
"""

__all__ = ["SiteSummary"]
