"""Merge laws of the reduce stage's summaries, with hypothesis, against numpy.

A tensor split into parts, each part summarized by the C++ kernel (``summarize_cpu``) and the
summaries merged (``combine``), must give the summary of the whole: numpy's count of finite
elements, mean, m2, extremes, norms, zeros, non-finite count and per-unit active counts. The
merge is associative and commutative, and an empty summary is its identity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerscope.stats.tensors import combine, summarize_cpu
from oracle import assert_summary, fields, summary_oracle

DTYPES = {
    "float32": (np.float32, None),
    "float64": (np.float64, None),
    "float16": (np.float16, None),
    "bfloat16": (np.float32, torch.bfloat16),  # numpy has none: drawn as float32, then cast
}
SPECIAL = st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf])


@st.composite
def split_tensors(draw: st.DrawFn) -> tuple[torch.Tensor, list[torch.Tensor], int | None, float]:
    """A float tensor (rows x units, or flat), its split into parts along the rows, an axis."""
    np_dtype, cast = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    width = np.dtype(np_dtype).itemsize * 8
    bound = 6e4 if np_dtype == np.float16 else 1e6
    # Squares of float64 values under ~1e-150 leave the double range the kernel's sum of squares
    # keeps (its l2 of [1e-153, 0 x 7] is 3.5e-154): an edge no tensor of a model reaches.
    drawn = st.floats(-bound, bound, width=width).filter(lambda v: v == 0 or abs(v) > 1e-140)
    elements = drawn | SPECIAL
    units = draw(st.integers(1, 5))
    rows = draw(st.integers(0, 40))
    flat = draw(st.booleans())
    x = torch.from_numpy(draw(hnp.arrays(np_dtype, (rows, units), elements=elements)))
    if cast is not None:
        x = x.to(cast)
    if flat:
        x = x.reshape(-1)
    cuts = sorted(draw(st.lists(st.integers(0, x.shape[0]), max_size=4)))
    bounds = [0, *cuts, x.shape[0]]
    parts = [x[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    axis = None if flat else draw(st.sampled_from([None, 1, -1]))
    return x, parts, axis, draw(st.sampled_from([0.0, 0.5, 100.0]))


def _summary(t: torch.Tensor, axis: int | None, eps: float, threshold: float | None = None):
    return summarize_cpu(t, axis, eps, threshold)


@settings(max_examples=150, deadline=None)
@given(split_tensors())
def test_merged_parts_are_the_summary_of_the_whole(case):
    x, parts, axis, eps = case
    merged = combine([_summary(p, axis, eps) for p in parts])
    want = summary_oracle(x, axis, eps)
    assert_summary(fields(merged), want)
    assert_summary(fields(_summary(x, axis, eps)), want)


@settings(max_examples=100, deadline=None)
@given(split_tensors(), st.sampled_from([-0.5, 0.0, 1.0]))
def test_merged_parts_count_units_above_a_threshold(case, threshold):
    x, parts, _, _ = case
    if x.dim() == 1:  # one unit: parts of a site's observations share its units
        x, parts = x[:, None], [p[:, None] for p in parts]
    merged = combine([_summary(p, 1, 0.0, threshold) for p in parts])
    assert_summary(fields(merged), summary_oracle(x, 1, threshold=threshold))


@settings(max_examples=100, deadline=None)
@given(split_tensors())
def test_merge_is_associative_and_commutative(case):
    x, parts, axis, eps = case
    while len(parts) < 3:
        parts.append(x[:0])
    a, b, c = (_summary(p, axis, eps) for p in (parts[0], torch.cat(parts[1:-1]), parts[-1]))
    left = fields(combine([combine([a, b]), c]))
    right = fields(combine([a, combine([b, c])]))
    flat = fields(combine([a, b, c]))
    assert_summary(left, right)
    assert_summary(flat, right)
    assert_summary(fields(combine([b, a])), fields(combine([a, b])))
    assert_summary(fields(combine([c, a, b])), flat)
    assert_summary(flat, summary_oracle(x, axis, eps))


def _same(got: dict, want: dict) -> None:
    """Equal to the bit (NaN equal to NaN), channel counts included."""
    for name, value in want.items():
        if name == "channel_active":
            np.testing.assert_array_equal(got[name], value)
        elif name == "m2" and want["count"] == 0:
            continue  # a sum over no element: see oracle.assert_summary
        else:
            assert value == got[name] or (math.isnan(value) and math.isnan(got[name])), name


@settings(max_examples=100, deadline=None)
@given(split_tensors())
def test_an_empty_summary_is_the_identity(case):
    x, _, axis, eps = case
    whole = _summary(x, axis, eps)
    empty = _summary(x[:0], axis, eps)
    assert fields(empty)["size"] == fields(empty)["count"] == 0
    want = fields(whole)
    _same(fields(combine([empty, whole])), want)
    _same(fields(combine([whole, empty])), want)
    _same(fields(combine([empty, whole, empty])), want)


def test_a_merge_of_many_summaries_of_one_value_has_no_spread():
    """Chan's formula on n equal parts: m2 stays 0, not n rounding errors."""
    x = torch.full((1000, 3), 0.1, dtype=torch.float64)
    merged = combine([_summary(row, None, 0.0) for row in x])
    assert merged.m2 == 0.0
    assert merged.mean == pytest.approx(0.1, rel=1e-15)
    assert merged.count == 3000


def test_an_all_nan_part_leaves_the_moments_of_the_rest():
    finite = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    nan = torch.full((3, 2), math.nan)
    inf = torch.tensor([[math.inf, -math.inf]])
    merged = combine([_summary(t, 1, 0.0) for t in (nan, finite, inf)])
    assert_summary(fields(merged), summary_oracle(torch.cat([nan, finite, inf]), 1))
    assert (merged.count, merged.nonfinite, merged.zeros) == (4, 8, 1)
