"""numpy references for the reduce stage: what a summary of a tensor must hold, field by field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

#: The fields of a :class:`layerscope.stats.SiteSummary`, as this oracle computes them.
SCALARS = ("mean", "m2", "min", "max", "l1", "l2")
COUNTS = ("size", "count", "zeros", "nonfinite")
FIELDS = (*COUNTS, *SCALARS)
#: Float32, float16 and bfloat16 input is accumulated in float over short stretches, then in
#: double: agreement to 1e-6 of the data's scale; float64 input far closer.
FLOAT_RTOL = 1e-6


def summary_oracle(
    x: torch.Tensor | np.ndarray,
    channel_axis: int | None = None,
    eps: float = 0.0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Every field of a summary of `x`, computed by numpy in float64 from the values as stored.

    ``channel_active[c]``: elements of unit ``c`` above `threshold`, or with ``|x| > eps``.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    finite = x[np.isfinite(x)]
    n = finite.size
    mean = finite.mean() if n else math.nan
    want: dict[str, Any] = {
        "size": x.size,
        "count": n,
        "mean": mean,
        "m2": float(((finite - mean) ** 2).sum()) if n else 0.0,  # as SiteSummary has it
        "min": finite.min() if n else math.nan,
        "max": finite.max() if n else math.nan,
        "l1": float(np.abs(finite).sum()),
        "l2": math.sqrt((finite**2).sum()),
        "zeros": int((finite == 0).sum()),
        "nonfinite": int((~np.isfinite(x)).sum()),
        "channel_active": None,
    }
    if channel_axis is not None:
        hit = x > threshold if threshold is not None else np.abs(x) > eps
        moved = np.moveaxis(hit, channel_axis, 0)
        want["channel_active"] = moved.reshape(moved.shape[0], math.prod(moved.shape[1:])).sum(1)
    return want


def fields(summary: object) -> dict[str, Any]:
    """The fields of a summary by name, whatever type holds them; channel_active as an array."""
    out = {name: getattr(summary, name) for name in FIELDS}
    active = summary.channel_active  # type: ignore[attr-defined]
    out["channel_active"] = None if active is None else np.asarray(active, dtype=np.int64)
    return out


def assert_summary(got: dict[str, Any], want: dict[str, Any], rtol: float = FLOAT_RTOL) -> None:
    """Counts and unit activity exact; the moments and norms to `rtol` of the data's scale.

    ``m2`` of a summary without finite elements is a sum over nothing: 0 or NaN are both taken
    (the C++ kernel says 0, the torch path and a merge of several such summaries NaN); nothing
    reads it, as the variance of no element is NaN either way.
    """
    for name in COUNTS:
        assert got[name] == want[name], (name, got[name], want[name])
    scale, square_scale = want["l1"], want["l2"] ** 2
    for name in SCALARS:
        value, expected = got[name], want[name]
        if name == "m2" and want["count"] == 0:
            assert value == 0 or math.isnan(value), (name, value)
        elif isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(value), (name, value)
        else:
            # Absolute part scaled to the data: m2 of near-constants, means of sums that cancel;
            # squares below 1e-300 may underflow on the way.
            atol = max(rtol * (square_scale if name == "m2" else scale), 1e-300)
            assert value == pytest.approx(expected, rel=rtol, abs=atol), (name, value, expected)
    if want["channel_active"] is None:
        assert got["channel_active"] is None
    else:
        np.testing.assert_array_equal(got["channel_active"], want["channel_active"])
