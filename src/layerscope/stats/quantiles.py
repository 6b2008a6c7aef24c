"""Streaming quantiles: a mergeable KLL-style sketch and an exact (bounded) accumulator.

:class:`QuantileSketch` answers quantile and rank queries over any stream in a few kilobytes
with a bounded normalized rank error; :class:`ExactQuantiles` keeps the values themselves and
answers exactly (numpy's default 'linear' method) up to a capacity, then from a uniform sample.
Both read float32/float64/float16/bfloat16 numpy arrays and CPU torch tensors in place, ignore
NaN (counting it), merge, and serialize to versioned bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerscope import _core
from layerscope.stats._arrays import readable

__all__ = ["ExactQuantiles", "QuantileSketch"]

_SKETCH_SEED = 0x6C617965725F7173
_EXACT_SEED = 0x6C617965725F6571
_U64 = 1 << 64


def _check_seed(seed: int, caller: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < _U64:
        raise ValueError(f"{caller}: seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def _probabilities(q: Any, caller: str) -> tuple[np.ndarray, bool]:  # noqa: ANN401
    arr = np.asarray(q, dtype=np.float64)
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise ValueError(f"{caller}: q must lie in [0, 1], got {q!r}")
    return np.ascontiguousarray(arr.reshape(-1)), arr.ndim == 0


class _QuantileState:
    """What both accumulators share: updates, merges, queries and bytes."""

    _core_type: Any = None
    _state: Any

    def update(self, array: Any) -> None:  # noqa: ANN401 - any array-like goes in
        """Add every element of `array` (any shape and strides; NaN is counted, then ignored).

        Raises:
            TypeError: for integer, complex or CUDA arrays.

        """
        name = type(self).__name__
        self._state.update(
            readable(np.asarray(array) if np.isscalar(array) else array, f"{name}.update")
        )

    def merge(self, other: _QuantileState) -> None:
        """Fold `other` (of the same class) in, as if its values had been added here."""
        if type(other) is not type(self):
            raise TypeError(
                f"{type(self).__name__}.merge: expected a {type(self).__name__}, "
                f"got {type(other).__name__}"
            )
        self._state.merge(other._state)

    def quantile(self, q: Any) -> Any:  # noqa: ANN401 - float or array of probabilities
        """Value at probability `q` (a float gives a float, an array an array of its shape).

        NaN when empty. Raises ValueError unless every q lies in [0, 1].
        """
        probabilities, scalar = _probabilities(q, f"{type(self).__name__}.quantile")
        result = self._state.quantiles(probabilities)
        return float(result[0]) if scalar else result.reshape(np.shape(q))

    def rank(self, x: Any) -> Any:  # noqa: ANN401 - float or array of points
        """Fraction of the values <= `x` (float in, float out; array in, array out).

        NaN when empty or where x is NaN.
        """
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 0:
            return float(self._state.rank(float(arr)))
        return self._state.ranks(np.ascontiguousarray(arr.reshape(-1))).reshape(arr.shape)

    def median(self) -> float:
        """Return the 0.5-quantile; NaN when empty."""
        return self.quantile(0.5)

    def iqr(self) -> float:
        """Interquartile range, quantile(0.75) - quantile(0.25); NaN when empty."""
        low, high = self._state.quantiles(np.array([0.25, 0.75]))
        return float(high - low)

    @property
    def count(self) -> int:
        """Number of values added, NaN excluded."""
        return int(self._state.count)

    @property
    def nan_count(self) -> int:
        """Number of NaN values seen (and ignored)."""
        return int(self._state.nan_count)

    @property
    def min(self) -> float:
        """Exact smallest value; NaN when empty."""
        return float(self._state.min)

    @property
    def max(self) -> float:
        """Exact largest value; NaN when empty."""
        return float(self._state.max)

    def serialize(self) -> bytes:
        """Versioned bytes of the whole state, PRNG included."""
        return self._state.serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> Any:  # noqa: ANN401 - an instance of cls
        """Rebuild a state from serialize()'s bytes.

        Raises:
            ValueError: for truncated or corrupted bytes, or bytes of another state type.

        """
        obj = cls.__new__(cls)
        obj._state = cls._core_type.deserialize(bytes(data))
        return obj

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (type(self).deserialize, (self.serialize(),))


class QuantileSketch(_QuantileState):
    """Mergeable KLL-style quantile sketch with a bounded normalized rank error.

    With probability 99 %, every rank it reports is within ``normalized_rank_error`` (about
    ``1.6 / k**0.92``: 1.22 % for k = 200) of the true fraction of values, for all queries at
    once, whatever the stream's length or distribution; it holds about 3k values.
    min and max are exact. The same seed and input give the same sketch.

    Args:
        k: accuracy parameter, 8 <= k <= 65535 (default 200).
        seed: seed of the sketch's own random generator, an integer in [0, 2**64).

    Example:
        >>> import numpy as np
        >>> from layerscope.stats import QuantileSketch
        >>> s = QuantileSketch(k=200)
        >>> s.update(np.arange(100_000, dtype=np.float32))
        >>> abs(s.quantile(0.5) / 100_000 - 0.5) < s.normalized_rank_error
        True
        >>> s.count, s.min, s.max
        (100000, 0.0, 99999.0)

    """

    _core_type = _core.QuantileSketch

    def __init__(self, k: int = 200, seed: int = _SKETCH_SEED) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 8 <= k <= 65535:
            raise ValueError(f"QuantileSketch: k must be an integer in [8, 65535], got {k!r}")
        self._state = _core.QuantileSketch(int(k), _check_seed(seed, "QuantileSketch"))

    @property
    def k(self) -> int:
        """The accuracy parameter."""
        return int(self._state.k)

    @property
    def normalized_rank_error(self) -> float:
        """99 %-confidence bound on the rank error (that of the smallest k merged in)."""
        return float(self._state.normalized_rank_error())

    @staticmethod
    def bound_for_k(k: int) -> float:
        """normalized_rank_error of a sketch with parameter `k`, without building one."""
        return float(_core.QuantileSketch.bound_for_k(int(k)))

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(k={self.k}, count={self.count}, retained={self._state.retained}, "
            f"min={self.min!r}, max={self.max!r}, "
            f"normalized_rank_error={self.normalized_rank_error:.4f})"
        )


class ExactQuantiles(_QuantileState):
    """Exact quantiles of up to `capacity` values (numpy's 'linear' method), then a sample.

    Past `capacity` values it keeps a uniform random sample of `capacity` of them (a reservoir
    with its own seeded generator); ``exact`` turns False and quantiles become estimates.
    min and max stay exact. NaN is ignored, as by ``numpy.nanquantile``.

    Args:
        capacity: most values kept (default 1,000,000, 8 MB), > 0.
        seed: seed of the reservoir's random generator, an integer in [0, 2**64).

    Example:
        >>> import numpy as np
        >>> from layerscope.stats import ExactQuantiles
        >>> e = ExactQuantiles()
        >>> e.update(np.array([3.0, 1.0, 4.0, 1.0, 5.0, np.nan]))
        >>> e.median(), e.quantile(0.9), e.exact, e.nan_count
        (3.0, 4.6, True, 1)

    """

    _core_type = _core.ExactQuantiles

    def __init__(self, capacity: int = 1_000_000, seed: int = _EXACT_SEED) -> None:
        if (
            isinstance(capacity, bool)
            or not isinstance(capacity, int | np.integer)
            or capacity <= 0
        ):
            raise ValueError(f"ExactQuantiles: capacity must be an integer > 0, got {capacity!r}")
        self._state = _core.ExactQuantiles(int(capacity), _check_seed(seed, "ExactQuantiles"))

    @property
    def capacity(self) -> int:
        """Most values kept."""
        return int(self._state.capacity)

    @property
    def exact(self) -> bool:
        """True while every value added is kept (count <= capacity)."""
        return bool(self._state.exact)

    def __repr__(self) -> str:
        return (
            f"ExactQuantiles(capacity={self.capacity}, count={self.count}, exact={self.exact}, "
            f"min={self.min!r}, max={self.max!r})"
        )
