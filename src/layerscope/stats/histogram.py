"""Histograms over fixed edges: linear, symmetric-log (for values spanning decades) or explicit.

Bin ``i`` holds ``edges[i] <= x < edges[i + 1]`` — half-open, the last bin too (numpy's
``histogram`` closes its last bin; here a value equal to the last edge is overflow). Values
below the first edge and -Inf are ``underflow``, values at or above the last edge and +Inf are
``overflow``, NaN is counted in ``nan`` and never binned. Counts are exact integers, so
histograms with identical edges merge exactly. The work happens in ``layerscope._core``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from layerscope import _core
from layerscope.stats._arrays import readable


def _index(value: Any, name: str, caller: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{caller}: {name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{caller}: {name} must be an integer, got {type(value).__name__}"
        ) from None


def _real(value: Any, name: str, caller: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{caller}: {name} must be a real number, got {type(value).__name__}")
    return float(value)


class Histogram:
    """Counts of values per bin over fixed, strictly increasing, finite edges.

    Build one with :meth:`linear`, :meth:`symlog`, or ``Histogram(edges)``. Lookups cost a few
    arithmetic operations for linear and symlog edges and a binary search for explicit ones.

    Args:
        edges: 2 to 1,000,001 finite, strictly increasing values.

    Raises:
        ValueError: if the edges are not 1-d, finite and strictly increasing, or too many.

    Example:
        >>> import numpy as np
        >>> h = Histogram.linear(0.0, 4.0, bins=4)
        >>> h.update(np.array([0.5, 1.0, 3.9, 4.0, -1.0, np.nan, np.inf]))
        >>> h.counts.tolist(), h.underflow, h.overflow, h.nan, h.total
        ([1, 1, 0, 1], 1, 2, 1, 7)
        >>> Histogram.symlog(1e-3, 10.0, bins_per_decade=1).edges.tolist()[5:]
        [0.0, 0.001, 0.01, 0.1, 1.0, 10.0]

    """

    __slots__ = ("_state",)

    def __init__(self, edges: Any) -> None:
        array = np.asarray(edges, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"Histogram: edges must be 1-d, got {array.ndim} dimensions")
        self._state = _core.Histogram(np.ascontiguousarray(array))

    @classmethod
    def linear(cls, low: float, high: float, bins: int) -> Histogram:
        """``bins`` equal bins over ``[low, high)``.

        Raises:
            TypeError: for a non-integer `bins` or non-numeric bounds.
            ValueError: unless ``low < high`` (both finite, ``high - low`` finite) and
                ``1 <= bins <= 1_000_000``.

        """
        caller = "Histogram.linear"
        return cls._wrap(
            _core.Histogram.linear(
                _real(low, "low", caller), _real(high, "high", caller), _index(bins, "bins", caller)
            )
        )

    @classmethod
    def symlog(cls, linear_width: float, max_abs: float, bins_per_decade: int) -> Histogram:
        """Symmetric-log bins over ``[-max_abs, max_abs)``, as suits gradients.

        ``[-linear_width, linear_width)`` is split at zero into two linear bins; beyond it, edges
        sit at ``±linear_width * 10**(k / bins_per_decade)`` for k = 1, 2, ... and ``±max_abs``
        is the outermost edge (the outermost bins may be narrower).

        Raises:
            TypeError: for a non-integer `bins_per_decade` or non-numeric bounds.
            ValueError: unless ``0 < linear_width < max_abs`` (finite), ``bins_per_decade >= 1``
                and the histogram has at most 1,000,000 bins.

        """
        caller = "Histogram.symlog"
        return cls._wrap(
            _core.Histogram.symlog(
                _real(linear_width, "linear_width", caller),
                _real(max_abs, "max_abs", caller),
                _index(bins_per_decade, "bins_per_decade", caller),
            )
        )

    @classmethod
    def _wrap(cls, state: Any) -> Histogram:
        out = cls.__new__(cls)
        out._state = state
        return out

    def update(self, values: Any) -> None:
        """Count every element of `values` (any shape and layout), or one Python number.

        Raises:
            TypeError: for a dtype other than float32/float64/float16/bfloat16, or a CUDA or
                sparse tensor.

        """
        if isinstance(values, (float, int)) and not isinstance(values, bool):
            self._state.update_value(float(values))
        else:
            self._state.update(readable(values, "Histogram.update"))

    def merge(self, other: Histogram) -> None:
        """Add `other`'s counts.

        Raises:
            TypeError: if `other` is not a :class:`Histogram`.
            ValueError: unless the edges are identical.

        """
        if not isinstance(other, Histogram):
            raise TypeError(f"Histogram.merge: expected a Histogram, got {type(other).__name__}")
        self._state.merge(other._state)

    @property
    def kind(self) -> str:
        """``"linear"``, ``"symlog"`` or ``"explicit"``: how the edges were made."""
        return self._state.kind

    @property
    def bins(self) -> int:
        """Number of bins (``len(edges) - 1``)."""
        return self._state.bins

    @property
    def edges(self) -> np.ndarray:
        """The ``bins + 1`` edges (float64, a copy)."""
        return self._state.edges

    @property
    def counts(self) -> np.ndarray:
        """Count per bin ``[edges[i], edges[i + 1])`` (int64, a copy)."""
        return self._state.counts

    @property
    def underflow(self) -> int:
        """Values below ``edges[0]``, -Inf included."""
        return self._state.underflow

    @property
    def overflow(self) -> int:
        """Values at or above ``edges[-1]``, +Inf included."""
        return self._state.overflow

    @property
    def nan(self) -> int:
        """NaN values, which never land in a bin."""
        return self._state.nan

    @property
    def total(self) -> int:
        """Every value seen: binned, underflow, overflow and NaN."""
        return self._state.total

    def serialize(self) -> bytes:
        """Versioned bytes (edges included) that :meth:`deserialize` turns back into this state."""
        return self._state.serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> Histogram:
        """Rebuild a histogram from :meth:`serialize`'s bytes.

        Raises:
            TypeError: if `data` is not bytes-like.
            ValueError: for truncated or corrupted bytes, or bytes of another state type.

        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Histogram.deserialize: expected bytes, got {type(data).__name__}")
        return cls._wrap(_core.Histogram.deserialize(bytes(data)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        edges = self.edges
        return (
            f"Histogram(kind={self.kind!r}, bins={self.bins}, range=[{edges[0]:.6g}, "
            f"{edges[-1]:.6g}), total={self.total})"
        )
