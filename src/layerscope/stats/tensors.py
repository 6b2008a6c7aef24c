"""Reducers: one tensor in, one small summary out.

CPU tensors go through the C++ fused kernel (:func:`layerscope.stats.summarize`) in place.
Tensors on an accelerator are reduced there with torch ops into one packed vector per
observation; nothing leaves the device until the scope copies every pending summary of
a flush to the host in a single transfer (:func:`fetch`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.dlpack import to_dlpack

from layerscope import _core
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.threads import torch_team

#: Quantile levels every quantile-capable path computes (median and IQR derive from them).
QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Most elements the accumulated statistics (quantiles, histograms) read per observation;
#: larger tensors are read through an evenly strided sample of at most this many elements
#: (rank error of a sampled quantile ~ 1/sqrt(16384) = 0.8 %), so their cost stays bounded.
DISTRIBUTION_SAMPLE = 1 << 14

#: The smallest mean square a norms-only summary is taken for. Float squares below 1.2e-38 are
#: subnormal and below 7e-46 vanish, so a float sum of squares is off by at most ~3e-45 per
#: element: from a mean square of 2^-100 (8e-31) up that is under 1e-14 of the sum.
TINY_MEAN_SQUARE = 2.0**-100
#: The threads the kernels borrow: torch's (torch is imported above).
TEAM = torch_team()


@dataclass
class DeviceSummary:
    """A :class:`~layerscope.stats.SiteSummary` still on the device, as tensors."""

    packed: torch.Tensor  # float64, the scalar fields in SiteSummary.fields order
    channel_active: torch.Tensor | None = None
    sample: torch.Tensor | None = field(default=None)  # float32 (float64 input: float64) subsample


def summarize_cpu(
    tensor: torch.Tensor, channel_axis: int | None, eps: float, threshold: float | None
) -> SiteSummary:
    """Summarize a CPU tensor with the fused C++ kernel, reading it in place."""
    # A DLPack capsule, not the tensor: nanobind would otherwise go through the tensor's
    # ``__dlpack__`` method, which costs more than summarizing a small tensor. The kernel's
    # threads are torch's.
    return _core.summarize_site(
        to_dlpack(tensor), channel_axis, eps, threshold, torch.get_num_threads(), TEAM
    )


def summarize_norms_cpu(tensor: torch.Tensor) -> SiteSummary:
    """A norms-only summary of a CPU tensor: its L2 norm and element counts, read in place.

    One multiply-add per element (``_core.sum_of_squares``) where the full summary spends
    about ten operations on moments and extremes. ``mean``, ``m2``, ``min``, ``max`` and
    ``l1`` are NaN and ``zeros`` 0 (not computed). The full summary is taken instead for a
    tensor holding a NaN or an infinity, whose non-finite elements must be counted, and for
    one of tiny values (vanishing gradients), whose squares underflow in float.
    """
    squares = _core.sum_of_squares(to_dlpack(tensor), torch.get_num_threads(), TEAM)
    size = tensor.numel()
    if not (TINY_MEAN_SQUARE * size <= squares < math.inf):  # NaN fails both
        return summarize_cpu(tensor, None, 0.0, None)
    nan = math.nan
    return SiteSummary(
        size=size, count=size, mean=nan, m2=nan, min=nan, max=nan, l1=nan, l2=math.sqrt(squares)
    )


def strided_sample(tensor: torch.Tensor, limit: int = DISTRIBUTION_SAMPLE) -> torch.Tensor:
    """At most `limit` elements of `tensor`, evenly strided over its flattened order.

    The stride is coprime with the length of a row (the elements after the first axis), so the
    sample visits every column of a matrix (every unit of a batch of outputs): a stride of 8
    over rows of 512 would read one column in 8. A view (no copy) for contiguous tensors, and
    the tensor itself when it is small enough.
    """
    flat = tensor.detach().reshape(-1)
    stride = sample_stride(tensor, limit)
    return flat if stride == 1 else flat[::stride]


def sample_stride(tensor: torch.Tensor, limit: int = DISTRIBUTION_SAMPLE) -> int:
    """The stride of :func:`strided_sample`: 1 when `tensor` has at most `limit` elements."""
    size = tensor.numel()
    stride = -(-size // limit)
    if stride <= 1:
        return 1
    row = size // tensor.shape[0] if tensor.dim() > 1 else 1
    while math.gcd(stride, row) > 1:
        stride += 1
    return stride


def summary_of_values(values: Sequence[float]) -> SiteSummary:
    """The summary :func:`summarize_cpu` gives of a few host numbers (a ratio, two extremes)."""
    if len(values) == 1 and math.isfinite(value := values[0]):  # the usual case, made cheap
        size = abs(value)
        return SiteSummary(
            size=1, count=1, mean=value, m2=0.0, min=value, max=value, l1=size, l2=size,
            zeros=int(value == 0),
        )  # fmt: skip
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return SiteSummary(
            size=len(values), zeros=sum(v == 0 for v in values), nonfinite=len(values)
        )
    mean = math.fsum(finite) / len(finite)
    return SiteSummary(
        size=len(values),
        count=len(finite),
        mean=mean,
        m2=math.fsum((v - mean) ** 2 for v in finite),
        min=min(finite),
        max=max(finite),
        l1=math.fsum(abs(v) for v in finite),
        l2=math.sqrt(math.fsum(v * v for v in finite)),
        zeros=sum(v == 0 for v in values),
        nonfinite=len(values) - len(finite),
    )


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    """A float64 0-d tensor on `device`, made by a fill kernel (no host-to-device copy)."""
    return torch.full((), value, dtype=torch.float64, device=device)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or float64 as it is: float32 would make 1e39 infinite and 1e-50 zero."""
    return x if x.dtype == torch.float64 else x.float()


def summarize_torch(
    tensor: torch.Tensor,
    channel_axis: int | None,
    eps: float,
    threshold: float | None,
    want_sample: bool = False,
) -> DeviceSummary:
    """Summarize a tensor with torch ops on its own device; no host synchronisation."""
    x = tensor.detach()
    xf = _wide(x)
    device = x.device
    scalar = functools.partial(_scalar, device=device)
    finite = torch.isfinite(xf)
    count = finite.sum(dtype=torch.float64)
    zeroed = torch.where(finite, xf, torch.zeros((), dtype=xf.dtype, device=device)).double()
    mean = zeroed.sum() / count.clamp(min=1)
    deviations = torch.where(finite, zeroed - mean, scalar(0.0))
    inf, nan = scalar(math.inf), scalar(math.nan)
    lo = torch.where(finite, zeroed, inf).amin() if x.numel() else inf
    hi = torch.where(finite, zeroed, -inf).amax() if x.numel() else -inf
    has = count > 0
    fields = {
        "size": scalar(float(x.numel())),
        "count": count,
        "mean": torch.where(has, mean, nan),
        "m2": deviations.square().sum(),
        "min": torch.where(has, lo, nan),
        "max": torch.where(has, hi, nan),
        "l1": zeroed.abs().sum(),
        "l2": zeroed.square().sum().sqrt(),
        "zeros": (xf == 0).sum(dtype=torch.float64),
        "nonfinite": x.numel() - count,
    }
    packed = torch.stack([fields[name] for name in SiteSummary.fields])
    active = None
    if channel_axis is not None:
        hit = xf > threshold if threshold is not None else xf.abs() > eps
        axis = channel_axis % x.dim()
        dims = [d for d in range(x.dim()) if d != axis]
        active = hit.sum(dim=dims) if dims else hit.long()
    # Non-finite values stay in the sample (boolean indexing would synchronise with the host);
    # the host-side quantile buffer skips NaN.
    sample = strided_sample(xf) if want_sample and x.numel() else None
    return DeviceSummary(packed=packed, channel_active=active, sample=sample)


def summarize_norms_torch(tensor: torch.Tensor) -> DeviceSummary:
    """A norms-only summary (see :func:`summarize_norms_cpu`) with torch ops on the device.

    No host synchronisation, so the non-finite count is always taken, and the norm is that of
    the finite elements, as in the full summary: four reductions and element-wise ops where
    :func:`summarize_torch` launches about twenty and widens the tensor to float64 first.
    """
    x = tensor.detach()
    device = x.device
    finite = torch.isfinite(x)
    count = finite.sum(dtype=torch.float64)
    zero = torch.zeros((), dtype=x.dtype, device=device)
    l2 = torch.linalg.vector_norm(torch.where(finite, x, zero), dtype=torch.float64)
    size, nan = _scalar(float(x.numel()), device), _scalar(math.nan, device)
    fields = {
        "size": size,
        "count": count,
        "l2": l2,
        "zeros": _scalar(0.0, device),
        "nonfinite": size - count,
    }
    packed = torch.stack([fields.get(name, nan) for name in SiteSummary.fields])
    return DeviceSummary(packed=packed)


def count_exceeding(tensor: torch.Tensor, level: float, absolute: bool) -> int:
    """Elements of a CPU tensor with ``|x| > level`` (absolute) or ``x > level``; one C++ pass."""
    threads = torch.get_num_threads()
    if absolute:
        s = _core.summarize(to_dlpack(tensor), None, level, None, max_threads=threads, team=TEAM)
    else:
        s = _core.summarize(to_dlpack(tensor), None, 0.0, level, max_threads=threads, team=TEAM)
    return int(np.asarray(s.channel_active).sum())


def count_exceeding_torch(tensor: torch.Tensor, level: float, absolute: bool) -> torch.Tensor:
    """The same count as :func:`count_exceeding`, left on the tensor's device."""
    x = _wide(tensor.detach())
    return ((x.abs() if absolute else x) > level).sum()


def extremes_and_count_below(tensor: torch.Tensor, level: float) -> tuple[float, float, int, int]:
    """Smallest and largest element of a CPU tensor, how many are below `level`, how many zero.

    One pass of the C++ kernel, no temporary. NaN is left out of all four (both extremes are
    NaN when every element is); ±Inf count as values.
    """
    # The kernel counts x > threshold; x >= level is x > the next double below level.
    s = _core.summarize(
        to_dlpack(tensor),
        None,
        0.0,
        math.nextafter(level, -math.inf),
        max_threads=torch.get_num_threads(),
        team=TEAM,
    )
    at_or_above = int(np.asarray(s.channel_active).sum())  # +Inf included, NaN never
    largest = math.inf if s.pos_inf else s.max  # min and max of the kernel skip ±Inf
    smallest = -math.inf if s.neg_inf else (s.min if s.count else largest)
    return smallest, largest, s.size - s.nan - at_or_above, s.zeros


def extremes_and_count_below_torch(
    tensor: torch.Tensor, level: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`extremes_and_count_below` with torch ops on the tensor's device, no host sync.

    `level` may be a 0-d tensor on that device. Returns a float64 ``[smallest, largest]`` and
    0-d counts of the elements below `level` and of the zeros, on the device.
    """
    x = tensor.detach()
    nan = torch.isnan(x)
    smallest = x.masked_fill(nan, math.inf).amin()
    largest = x.masked_fill(nan, -math.inf).amax()
    extremes = torch.stack([smallest, largest]).double()
    extremes = torch.where(nan.all(), math.nan, extremes)
    return extremes, (x < level).sum(), (x == 0).sum()


def device_tensors(summary: DeviceSummary) -> list[torch.Tensor]:
    """The tensors of `summary` that :func:`unpack` reads back, in order."""
    if summary.channel_active is None:
        return [summary.packed]
    return [summary.packed, summary.channel_active]


def fetch(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Copy tensors (any devices' dtypes, shapes) to the host as float64 arrays in one transfer."""
    if not tensors:
        return []
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors]).cpu().numpy()
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()])
        offset += t.numel()
    return out


def unpack(summary: DeviceSummary, values: Iterator[np.ndarray]) -> SiteSummary:
    """A host summary from the fetched arrays of :func:`device_tensors`."""
    packed = next(values)
    active = next(values).astype(np.int64) if summary.channel_active is not None else None
    return SiteSummary.from_packed(packed, active)


def combine(summaries: Sequence[SiteSummary]) -> SiteSummary:
    """Merge summaries of several observations of one site (exact: :meth:`SiteSummary.merge`)."""
    if len(summaries) == 1:
        return summaries[0]
    return SiteSummary.merge_all(summaries)
