"""
layerscope's C++ statistics engine (use layerscope.stats, its public face).
"""

from collections.abc import Sequence
from typing import Annotated

import numpy
from numpy.typing import NDArray


class ThreadTeam:
    """
    Threads the kernels borrow for a large buffer (their `team` argument): those of the OpenMP runtime already loaded into the process, which start in microseconds where threads of the kernels' own take tens, and which read the shares of a tensor that they wrote themselves.
    """

    @staticmethod
    def openmp(library: str | None = None) -> ThreadTeam | None:
        """
        The team of the OpenMP runtime that a library of the process has loaded from `library` (a path or file name), such as PyTorch's; without it, the first loaded of libgomp, libiomp5 and libomp. None when none is loaded (nothing is loaded here) or the platform has no dlopen.
        """

    def __repr__(self) -> str: ...

class Summary:
    """
    Statistics of one buffer, as returned by :func:`summarize`; read-only.

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

    @property
    def size(self) -> int:
        """All elements, finite or not."""

    @property
    def count(self) -> int:
        """Finite elements."""

    @property
    def sum(self) -> float:
        """Sum of the finite values (0.0 when count is 0)."""

    @property
    def sum_sq(self) -> float:
        """Sum of squares of the finite values."""

    @property
    def mean(self) -> float:
        """Mean of the finite values (NaN when count is 0)."""

    @property
    def m2(self) -> float:
        """Sum of squared deviations from the mean (stable)."""

    @property
    def min(self) -> float:
        """Smallest finite value (NaN when count is 0)."""

    @property
    def max(self) -> float:
        """Largest finite value (NaN when count is 0)."""

    @property
    def l1(self) -> float:
        """Sum of |x| over the finite values."""

    @property
    def l2(self) -> float:
        """Euclidean norm of the finite values."""

    @property
    def zeros(self) -> int:
        """Elements equal to zero."""

    @property
    def nan(self) -> int:
        """NaN elements."""

    @property
    def pos_inf(self) -> int:
        """+Inf elements."""

    @property
    def neg_inf(self) -> int:
        """-Inf elements."""

    @property
    def channel_count(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]:
        """
        Finite elements per channel (int64 array, one entry without a channel axis; empty when summarized with channel_sums=False).
        """

    @property
    def channel_active(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]:
        """
        Active elements per channel: |x| > eps, or x > threshold when one was given.
        """

    @property
    def channel_sum(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]:
        """
        Sum of the finite values per channel (float64 array; empty without channel_sums).
        """

    @property
    def channel_sum_sq(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]:
        """
        Sum of squares of the finite values per channel (float64 array; empty without channel_sums).
        """

    @property
    def variance(self) -> float:
        """Population variance m2 / count (NaN when count is 0)."""

    @property
    def std(self) -> float:
        """Population standard deviation (NaN when count is 0)."""

    @property
    def nonfinite(self) -> int:
        """NaN and +/-Inf elements together."""

    @property
    def channels(self) -> int:
        """Number of channels (1 without a channel axis)."""

    def __repr__(self) -> str: ...

def summarize(array: Annotated[NDArray, dict(writable=False)], channel_axis: int | None = None, eps: float = 0.0, threshold: float | None = None, channel_sums: bool = True, max_threads: int | None = None, team: ThreadTeam | None = None) -> Summary:
    """
    One-pass Summary of a float32/float64/float16/bfloat16 CPU array, any strides; large arrays are read by at most max_threads threads (None: the hardware's). With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.
    """

class SiteSummary:
    """
    Statistics of one or more observations of a site, with an exact merge.

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

    def __init__(self, *, size: int = 0, count: int = 0, mean: float = float('nan'), m2: float = 0.0, min: float = float('nan'), max: float = float('nan'), l1: float = 0.0, l2: float = 0.0, zeros: int = 0, nonfinite: int = 0, channel_active: object | None = None) -> None:
        """
        A SiteSummary from its named fields (keywords only); the defaults are the empty one.
        """

    @property
    def size(self) -> int:
        """All elements, finite or not."""

    @property
    def count(self) -> int:
        """Finite elements."""

    @property
    def mean(self) -> float:
        """Mean of the finite values (NaN when count is 0)."""

    @property
    def m2(self) -> float:
        """Sum of squared deviations from the mean (0 when empty)."""

    @property
    def min(self) -> float:
        """Smallest finite value (NaN when count is 0)."""

    @property
    def max(self) -> float:
        """Largest finite value (NaN when count is 0)."""

    @property
    def l1(self) -> float:
        """Sum of the absolute finite values."""

    @property
    def l2(self) -> float:
        """Euclidean norm of the finite values."""

    @property
    def zeros(self) -> int:
        """Elements equal to zero."""

    @property
    def nonfinite(self) -> int:
        """NaN and +/-Inf elements."""

    @property
    def channel_active(self) -> object:
        """
        Active elements per unit (read-only int64 array), None without a unit axis.
        """

    @property
    def variance(self) -> float:
        """Population variance m2 / count (NaN when count is 0)."""

    @property
    def std(self) -> float:
        """Population standard deviation (NaN when count is 0)."""

    def merge(self, other: SiteSummary) -> SiteSummary:
        """
        A new SiteSummary of both summaries' elements together (exact: Chan's formula for mean and m2, counts and l1 add, l2 as hypot, per-unit counts add).
        """

    @staticmethod
    def merge_all(summaries: Sequence[SiteSummary]) -> SiteSummary:
        """The merge of every summary of a sequence (empty: the empty one)."""

    @staticmethod
    def from_packed(values: Annotated[NDArray[numpy.float64], dict(shape=(None,), device='cpu', writable=False)], channel_active: object | None = None) -> SiteSummary:
        """
        The SiteSummary whose scalar fields are `values` (float64, SiteSummary.fields order; counts rounded; with count 0, mean/min/max become NaN and m2/l1/l2 0).
        """

    def __getstate__(self) -> tuple: ...

    def __setstate__(self, arg: tuple, /) -> None: ...

    def __repr__(self) -> str: ...

    fields: tuple = ...

def summarize_site(array: Annotated[NDArray, dict(writable=False)], channel_axis: int | None = None, eps: float = 0.0, threshold: float | None = None, max_threads: int | None = None, team: ThreadTeam | None = None) -> SiteSummary:
    """
    The SiteSummary of a float32/float64/float16/bfloat16 CPU array, any strides: one pass of summarize(); per-unit active counts along `channel_axis` (None: no unit counts); large arrays are read by at most max_threads threads (None: the hardware's). With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.
    """

def count_nonfinite(array: Annotated[NDArray, dict(writable=False)], max_threads: int | None = None, team: ThreadTeam | None = None) -> int:
    """
    The NaN and +/-Inf elements of a float32/float64/float16/bfloat16 CPU array, any strides, read by their exponent bits in place; large contiguous arrays are read by at most max_threads threads (None: the hardware's). With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.
    """

def sum_of_squares(array: Annotated[NDArray, dict(writable=False)], max_threads: int | None = None, team: ThreadTeam | None = None) -> float:
    """
    The sum of the squares of a float32/float64/float16/bfloat16 CPU array's elements, any strides, in place, as a float: NaN or inf when an element is (or a float32 square overflows), so a finite sum proves every element finite; large contiguous arrays are read by at most max_threads threads (None: the hardware's). With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.
    """

class Moments:
    """Running moments of the finite values of a stream."""

    def __init__(self) -> None: ...

    def update(self, array: Annotated[NDArray, dict(writable=False)]) -> None:
        """Adds every element of a float array."""

    def update_value(self, value: float) -> None: ...

    def update_summary(self, count: int, mean: float, m2: float, min: float, max: float, sum: float, sum_sq: float, nonfinite: int = 0) -> None:
        """Folds in a precomputed summary; ValueError if impossible."""

    def merge(self, other: Moments) -> None: ...

    @property
    def count(self) -> int: ...

    @property
    def nonfinite(self) -> int: ...

    @property
    def mean(self) -> float: ...

    @property
    def variance(self) -> float: ...

    @property
    def sample_variance(self) -> float: ...

    @property
    def std(self) -> float: ...

    @property
    def m2(self) -> float: ...

    @property
    def min(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def sum(self) -> float: ...

    @property
    def sum_sq(self) -> float: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> Moments: ...

class ChannelMoments:
    """Running moments per channel."""

    def __init__(self, channels: int) -> None: ...

    def update(self, array: Annotated[NDArray, dict(writable=False)], channel_axis: int) -> None:
        """Adds every element to the channel its index on channel_axis names."""

    def merge(self, other: ChannelMoments) -> None: ...

    @property
    def channels(self) -> int: ...

    @property
    def count(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]: ...

    @property
    def nonfinite(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]: ...

    @property
    def mean(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def variance(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def sample_variance(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def std(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def m2(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def min(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def max(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def sum(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def sum_sq(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> ChannelMoments: ...

class Histogram:
    """Counts per bin [e[i], e[i+1]) over fixed edges."""

    def __init__(self, edges: Annotated[NDArray[numpy.float64], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> None: ...

    @staticmethod
    def linear(low: float, high: float, bins: int) -> Histogram: ...

    @staticmethod
    def symlog(linear_width: float, max_abs: float, bins_per_decade: int) -> Histogram: ...

    def update(self, array: Annotated[NDArray, dict(writable=False)]) -> None:
        """Counts every element of a float array."""

    def update_value(self, value: float) -> None: ...

    def merge(self, other: Histogram) -> None: ...

    @property
    def kind(self) -> str: ...

    @property
    def bins(self) -> int: ...

    @property
    def edges(self) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    @property
    def counts(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]: ...

    @property
    def underflow(self) -> int: ...

    @property
    def overflow(self) -> int: ...

    @property
    def nan(self) -> int: ...

    @property
    def total(self) -> int: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> Histogram: ...

class QuantileSketch:
    def __init__(self, k: int = 200, seed: int = 7809656705454666099) -> None: ...

    @property
    def k(self) -> int: ...

    @property
    def min_k(self) -> int: ...

    @property
    def retained(self) -> int: ...

    @property
    def num_levels(self) -> int: ...

    def normalized_rank_error(self) -> float: ...

    @staticmethod
    def bound_for_k(k: int) -> float: ...

    def update(self, array: Annotated[NDArray, dict(writable=False)]) -> None: ...

    def merge(self, other: QuantileSketch) -> None: ...

    def quantiles(self, qs: Annotated[NDArray[numpy.float64], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    def ranks(self, xs: Annotated[NDArray[numpy.float64], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    def rank(self, x: float) -> float: ...

    @property
    def count(self) -> int: ...

    @property
    def nan_count(self) -> int: ...

    @property
    def min(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def seed(self) -> int: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> QuantileSketch: ...

class ExactQuantiles:
    def __init__(self, capacity: int = 1000000, seed: int = 7809656705454663025) -> None: ...

    @property
    def capacity(self) -> int: ...

    @property
    def stored(self) -> int: ...

    @property
    def exact(self) -> bool: ...

    def update(self, array: Annotated[NDArray, dict(writable=False)]) -> None: ...

    def merge(self, other: ExactQuantiles) -> None: ...

    def quantiles(self, qs: Annotated[NDArray[numpy.float64], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    def ranks(self, xs: Annotated[NDArray[numpy.float64], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Annotated[NDArray[numpy.float64], dict(shape=(None,))]: ...

    def rank(self, x: float) -> float: ...

    @property
    def count(self) -> int: ...

    @property
    def nan_count(self) -> int: ...

    @property
    def min(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def seed(self) -> int: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> ExactQuantiles: ...

class ActivityTracker:
    """Per-unit activity over a window of observed steps; dead units."""

    def __init__(self, units: int, window: int) -> None: ...

    @property
    def units(self) -> int: ...

    @property
    def window(self) -> int: ...

    def update(self, step: int, active: Annotated[NDArray, dict(writable=False)]) -> None: ...

    def merge(self, other: ActivityTracker) -> None: ...

    def steps_observed(self) -> int: ...

    def last_step(self) -> int: ...

    def window_full(self) -> bool: ...

    def last_active(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]: ...

    def active_steps(self) -> Annotated[NDArray[numpy.int64], dict(shape=(None,))]: ...

    def dead(self) -> Annotated[NDArray[numpy.bool_], dict(shape=(None,))]: ...

    def dead_count(self) -> int: ...

    def dead_fraction(self) -> float: ...

    def serialize(self) -> bytes: ...

    @staticmethod
    def deserialize(data: bytes) -> ActivityTracker: ...

def build_info() -> dict:
    """
    How the engine was built: compiler, C++ standard (__cplusplus), NDEBUG, the SIMD paths of the summary kernel (compiled in; AVX2+FMA also checked on this CPU), and hardware_threads, the kernels' thread cap when a call gives no max_threads.
    """

def masked_crc32c(data: bytes) -> int:
    """
    The masked CRC-32C of `data`, as TFRecord framing (TensorBoard event files) stores it.
    """

def summarize_step(size: int, after: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)] | None, before: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)] | None, states: Sequence[Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)]], second: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)] | None, correction: float = 1.0, eps: float = 0.0, lr: float = 0.0, level: float = 0.0, stride: int = 1, max_threads: int | None = None, team: ThreadTeam | None = None) -> tuple:
    """
    One pass over a parameter's step, every array contiguous float32 on the CPU with `size` elements. Returns (update, states, adam): update is None without after/before, else (SiteSummary of Δw = after - before, ‖Δw‖, ‖before‖) with plain norms (NaN/Inf propagate); states the SiteSummary of each state array; adam None without `second`, else (the SiteSummary of v, smallest v, largest v (±Inf included, NaN left out), count of v < level, float32 step sizes lr / (sqrt(v / correction) + eps) at v[0], v[stride], ...). max_threads caps the threads that read a large parameter (None: the hardware's). With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.
    """
