"""Running moments — count, mean, variance, extrema, sums — of a stream of arrays.

:class:`Moments` summarises every finite value seen; :class:`ChannelMoments` does the same per
channel (output feature, conv channel). Both skip NaN and ±Inf (counting them in
``nonfinite``), accumulate in double precision whatever the input dtype, merge exactly (Chan's
formula) and serialize to versioned bytes. The work happens in ``layerscope._core``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from layerscope import _core
from layerscope.stats._arrays import readable


def _as_bytes(data: Any, caller: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{caller}: expected bytes, got {type(data).__name__}")


class Moments:
    """Running moments of every finite value of a stream of arrays.

    Empty (``count == 0``): ``mean``, ``variance``, ``std``, ``min`` and ``max`` are NaN, ``sum``
    and ``sum_sq`` are 0. ``sample_variance`` needs two values. NaN and ±Inf never enter the
    statistics; ``nonfinite`` counts them.

    Example:
        >>> import numpy as np
        >>> m = Moments()
        >>> m.update(np.array([1.0, 2.0, 3.0, np.nan], dtype=np.float32))
        >>> m.update(4.0)
        >>> m.count, m.mean, m.variance, m.nonfinite
        (4, 2.5, 1.25, 1)

    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _core.Moments()

    def update(self, values: Any) -> None:
        """Add every element of `values` (any shape and layout), or one Python number.

        Args:
            values: a float32/float64/float16/bfloat16 numpy array or CPU torch tensor, or a
                Python ``float`` / ``int``.

        Raises:
            TypeError: for another dtype, a CUDA or sparse tensor.

        """
        if isinstance(values, (float, int)) and not isinstance(values, bool):
            self._state.update_value(float(values))
        else:
            self._state.update(readable(values, "Moments.update"))

    def merge(self, other: Moments) -> None:
        """Fold `other` in, so that this describes both streams; merging an empty one is a no-op.

        Raises:
            TypeError: if `other` is not a :class:`Moments`.

        """
        if not isinstance(other, Moments):
            raise TypeError(f"Moments.merge: expected a Moments, got {type(other).__name__}")
        self._state.merge(other._state)

    @property
    def count(self) -> int:
        """Number of finite values seen."""
        return self._state.count

    @property
    def nonfinite(self) -> int:
        """Number of NaN / ±Inf values skipped."""
        return self._state.nonfinite

    @property
    def mean(self) -> float:
        """Arithmetic mean; NaN when empty."""
        return self._state.mean

    @property
    def variance(self) -> float:
        """Population variance (``ddof=0``); NaN when empty."""
        return self._state.variance

    @property
    def sample_variance(self) -> float:
        """Sample variance (``ddof=1``); NaN for fewer than two values."""
        return self._state.sample_variance

    @property
    def std(self) -> float:
        """Population standard deviation; NaN when empty."""
        return self._state.std

    @property
    def min(self) -> float:
        """Smallest finite value; NaN when empty."""
        return self._state.min

    @property
    def max(self) -> float:
        """Largest finite value; NaN when empty."""
        return self._state.max

    @property
    def sum(self) -> float:
        """Sum of the finite values; 0 when empty."""
        return self._state.sum

    @property
    def sum_sq(self) -> float:
        """Sum of squares of the finite values; 0 when empty."""
        return self._state.sum_sq

    def serialize(self) -> bytes:
        """Versioned bytes that :meth:`deserialize` turns back into an identical state."""
        return self._state.serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> Moments:
        """Rebuild a state from :meth:`serialize`'s bytes.

        Raises:
            TypeError: if `data` is not bytes-like.
            ValueError: for truncated or corrupted bytes, or bytes of another state type.

        """
        out = cls.__new__(cls)
        out._state = _core.Moments.deserialize(_as_bytes(data, "Moments.deserialize"))
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        return (
            f"Moments(count={self.count}, mean={self.mean:.6g}, std={self.std:.6g}, "
            f"min={self.min:.6g}, max={self.max:.6g}, nonfinite={self.nonfinite})"
        )


class ChannelMoments:
    """Running moments per channel; each channel behaves as a :class:`Moments`.

    The per-channel properties are numpy arrays of length ``channels``; an empty channel reads
    NaN for ``mean``, ``variance``, ``std``, ``min`` and ``max``.

    Args:
        channels: the number of channels, fixed for the life of the state (> 0).

    Raises:
        TypeError: if `channels` is not an integer.
        ValueError: if `channels` is not positive.

    Example:
        >>> import numpy as np
        >>> cm = ChannelMoments(3)
        >>> cm.update(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]]))  # [batch, channels]
        >>> cm.mean.tolist(), cm.variance.tolist()
        ([2.0, 2.0, 4.0], [1.0, 0.0, 1.0])
        >>> conv = ChannelMoments(2)
        >>> conv.update(np.ones((4, 2, 5, 5), dtype=np.float32), channel_axis=1)  # NCHW
        >>> conv.count.tolist()
        [100, 100]

    """

    __slots__ = ("_state",)

    def __init__(self, channels: int) -> None:
        try:
            channels = operator.index(channels)
        except TypeError:
            raise TypeError(
                f"ChannelMoments: channels must be an integer, got {type(channels).__name__}"
            ) from None
        self._state = _core.ChannelMoments(channels)

    @property
    def channels(self) -> int:
        """Number of channels."""
        return self._state.channels

    def update(self, values: Any, channel_axis: int = -1) -> None:
        """Add every element of `values` to the channel its index on `channel_axis` names.

        Args:
            values: a float32/float64/float16/bfloat16 numpy array or CPU torch tensor with at
                least one dimension.
            channel_axis: the axis that indexes channels; negative counts from the end. The
                default, -1, suits ``[batch, features]``; use 1 for ``[N, C, H, W]``.

        Raises:
            TypeError: for another dtype, a CUDA or sparse tensor, or a non-integer axis.
            ValueError: if the axis is out of range or its length is not ``channels``.

        """
        try:
            axis = operator.index(channel_axis)
        except TypeError:
            raise TypeError(
                "ChannelMoments.update: channel_axis must be an integer, got "
                f"{type(channel_axis).__name__}"
            ) from None
        self._state.update(readable(values, "ChannelMoments.update"), axis)

    def merge(self, other: ChannelMoments) -> None:
        """Fold `other` in, channel by channel.

        Raises:
            TypeError: if `other` is not a :class:`ChannelMoments`.
            ValueError: if the channel counts differ.

        """
        if not isinstance(other, ChannelMoments):
            raise TypeError(
                f"ChannelMoments.merge: expected a ChannelMoments, got {type(other).__name__}"
            )
        self._state.merge(other._state)

    @property
    def count(self) -> np.ndarray:
        """Finite values seen per channel (int64)."""
        return self._state.count

    @property
    def nonfinite(self) -> np.ndarray:
        """NaN / ±Inf values skipped per channel (int64)."""
        return self._state.nonfinite

    @property
    def mean(self) -> np.ndarray:
        """Mean per channel; NaN for empty channels."""
        return self._state.mean

    @property
    def variance(self) -> np.ndarray:
        """Population variance (``ddof=0``) per channel; NaN for empty channels."""
        return self._state.variance

    @property
    def sample_variance(self) -> np.ndarray:
        """Sample variance (``ddof=1``) per channel; NaN below two values."""
        return self._state.sample_variance

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel; NaN for empty channels."""
        return self._state.std

    @property
    def min(self) -> np.ndarray:
        """Smallest finite value per channel; NaN for empty channels."""
        return self._state.min

    @property
    def max(self) -> np.ndarray:
        """Largest finite value per channel; NaN for empty channels."""
        return self._state.max

    @property
    def sum(self) -> np.ndarray:
        """Sum per channel; 0 for empty channels."""
        return self._state.sum

    @property
    def sum_sq(self) -> np.ndarray:
        """Sum of squares per channel; 0 for empty channels."""
        return self._state.sum_sq

    def serialize(self) -> bytes:
        """Versioned bytes that :meth:`deserialize` turns back into an identical state."""
        return self._state.serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> ChannelMoments:
        """Rebuild a state from :meth:`serialize`'s bytes.

        Raises:
            TypeError: if `data` is not bytes-like.
            ValueError: for truncated or corrupted bytes, or bytes of another state type.

        """
        out = cls.__new__(cls)
        out._state = _core.ChannelMoments.deserialize(_as_bytes(data, "ChannelMoments.deserialize"))
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        return f"ChannelMoments(channels={self.channels}, count={int(self.count.sum())})"
