"""The fused one-pass summary of a tensor: moments, norms, extrema and per-channel activity.

:func:`summarize` reads a numpy array or a CPU torch tensor in place — float32, float64,
float16 or bfloat16, any strides — and returns a :class:`Summary`. It keeps no state; running
accumulators fold the summaries it returns.
"""

from __future__ import annotations

import sys
from typing import Any

from layerscope import _core
from layerscope.stats._arrays import readable
from layerscope.stats.threads import torch_team

Summary = _core.Summary
Summary.__doc__ = """Statistics of one buffer, as returned by :func:`summarize`; read-only.

NaN and +/-Inf elements are counted (``nan``, ``pos_inf``, ``neg_inf``) and left out of every
other statistic. float64 input is accumulated in double; float32, float16 and bfloat16 input in
float over short stretches that are folded into double at once, to within 1e-6 relative of a
float64 computation (5e-7 for sums and norms), adversarial data included. With no
finite element (``count == 0``), ``mean``, ``min``, ``max``, ``variance`` and ``std`` are NaN and
the sums and norms are 0.

Attributes:
    size: all elements. count: finite elements.
    sum, sum_sq, l1, l2: sum, sum of squares, sum of absolute values and Euclidean norm of the
        finite values.
    mean, m2, variance, std: mean, sum of squared deviations from it (computed stably),
        population variance ``m2 / count`` and its square root.
    min, max: extrema of the finite values.
    zeros, nan, pos_inf, neg_inf, nonfinite: element counts.
    channels: number of channels (1 without a channel axis).
    channel_count, channel_active, channel_sum, channel_sum_sq: numpy arrays with one entry
        per channel: finite elements, active elements (``|x| > eps`` or ``x > threshold``),
        sum and sum of squares of the finite values.

Example:
    >>> import numpy as np
    >>> s = summarize(np.array([[1.0, -2.0], [0.0, np.inf]]), channel_axis=1)
    >>> s.count, s.pos_inf, s.mean, s.min, s.max
    (3, 1, -0.3333333333333333, -2.0, 1.0)
    >>> s.channel_count.tolist(), s.channel_active.tolist()
    ([2, 1], [1, 2])
"""

__all__ = ["Summary", "summarize"]


def summarize(
    array: Any,  # noqa: ANN401 - numpy arrays, torch tensors, anything with DLPack
    channel_axis: int | None = None,
    eps: float = 0.0,
    threshold: float | None = None,
    channel_sums: bool = True,
    max_threads: int | None = None,
) -> Summary:
    """Summarize `array` in one pass over its memory, without copying it.

    The GIL is released while the C++ kernel runs; buffers of a million elements or more are
    shared among at most `max_threads` threads.

    Args:
        array: a numpy array or CPU torch tensor of float32, float64, float16 or bfloat16, of
            any shape and strides (transposed, sliced, flipped). Tensors that require grad are
            read through a detached view.
        channel_axis: the axis whose index is a unit (feature, channel); may count from the
            end. ``None``: the whole array is one channel.
        eps: an element is active when ``|x| > eps``. Must be >= 0.
        threshold: if given, an element is active when ``x > threshold`` instead (``0.0`` for
            ReLU-like outputs); `eps` is then ignored.
        channel_sums: ``False`` keeps only the per-channel activity counts (``channel_count``,
            ``channel_sum`` and ``channel_sum_sq`` come back empty), several times faster when
            the channel axis is the innermost one.
        max_threads: the most threads that read a large array, the caller's included.
            ``None``: ``torch.get_num_threads()`` once torch is imported (so the engine
            follows ``torch.set_num_threads``), else every hardware thread.

    Returns:
        The :class:`Summary` of the array.

    Raises:
        TypeError: for integer, bool or complex arrays, and for tensors outside CPU memory or
            with a sparse layout; the message names the dtype or device.
        ValueError: for a channel axis out of range, a negative or NaN `eps`, a NaN
            `threshold`, a `max_threads` below 1.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.5, -1.0, 0.0], [2.0, 0.0, np.nan]], dtype=np.float32)
        >>> s = summarize(x, channel_axis=-1, eps=0.75)
        >>> s.size, s.count, s.nan, s.zeros
        (6, 5, 1, 2)
        >>> round(s.mean, 6), s.min, s.max
        (0.3, -1.0, 2.0)
        >>> s.channel_active.tolist()
        [1, 1, 0]

    """
    return _core.summarize(
        readable(array, "summarize"),
        channel_axis=channel_axis,
        eps=eps,
        threshold=threshold,
        channel_sums=channel_sums,
        max_threads=max_threads if max_threads is not None else _torch_threads(),
        team=torch_team(),
    )


def _torch_threads() -> int | None:
    """The intra-op threads of torch, or None (the engine's default) while torch is not loaded."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
