"""The two reducers of the reduce stage agree: the C++ kernel on the host, torch ops on a device.

The CPU stands in for the device: ``summarize_torch`` runs the same torch ops there, and
``unpack(summary, iter(fetch(device_tensors(summary))))`` reads the result back as the window
builder does at a flush. Every field and the per-unit active counts must match the kernel's and
numpy's, on random data with NaN, ±Inf, empty and all-NaN tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import layerscope
from layerscope import lenses
from layerscope.stats.tensors import (
    count_exceeding,
    count_exceeding_torch,
    device_tensors,
    fetch,
    summarize_cpu,
    summarize_norms_cpu,
    summarize_norms_torch,
    summarize_torch,
    unpack,
)
from models import batches, mlp, train
from oracle import assert_summary, fields, summary_oracle


def on_device(t: torch.Tensor, axis: int | None, eps: float, threshold: float | None):
    """The torch-op summary of `t`, fetched and unpacked as a flush does."""
    summary = summarize_torch(t, axis, eps, threshold)
    return unpack(summary, iter(fetch(device_tensors(summary))))


def assert_paths_agree(t: torch.Tensor, axis: int | None, eps: float, threshold: float | None):
    host = fields(summarize_cpu(t, axis, eps, threshold))
    device = fields(on_device(t, axis, eps, threshold))
    want = summary_oracle(t, axis, eps, threshold)
    assert_summary(host, want)
    assert_summary(device, want)
    assert_summary(device, host)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[torch.Tensor, int | None, float, float | None]:
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
    np_dtype = np.float32 if dtype == "bfloat16" else np.dtype(dtype)
    width = np.dtype(np_dtype).itemsize * 8
    # float16 up to its largest value; others within float32's range (the torch path reads
    # in float32, see test_float64_values_beyond_float32_agree)
    bound = float(np.array(6.5e4 if dtype == "float16" else 1e30, np_dtype))
    drawn = st.floats(-bound, bound, width=width).filter(lambda v: v == 0 or abs(v) > 1e-30)
    elements = drawn | st.sampled_from([0.0, math.nan, math.inf, -math.inf])
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    x = torch.from_numpy(draw(hnp.arrays(np_dtype, shape, elements=elements)))
    if dtype == "bfloat16":
        x = x.bfloat16()
    if draw(st.booleans()):
        x = x.transpose(0, -1)  # a strided view
    axis = draw(st.none() | st.integers(-x.dim(), x.dim() - 1))
    threshold = draw(st.none() | st.sampled_from([-1.0, 0.0, 0.5]))
    return x, axis, draw(st.sampled_from([0.0, 0.5, 100.0])), threshold


@settings(max_examples=150, deadline=None)
@given(tensors())
def test_host_and_device_summaries_agree_field_by_field(case):
    assert_paths_agree(*case)


@settings(max_examples=150, deadline=None)
@given(tensors())
def test_host_and_device_norms_only_summaries_agree_on_the_norm_and_counts(case):
    """What a norms-only summary holds (the L2 norm of the finite elements and the counts) is
    the full summary's, on both paths; the device path leaves the moments out even when the
    tensor holds NaN (it cannot look without a host sync), the host path then reads them."""
    t = case[0]
    if t.numel() == 0:
        return  # never reduced: the gate skips empty tensors
    want = summary_oracle(t)
    host = summarize_norms_cpu(t)
    packed = summarize_norms_torch(t)
    device = unpack(packed, iter(fetch(device_tensors(packed))))
    for got in (host, device):
        for name in ("size", "count", "nonfinite"):
            assert getattr(got, name) == want[name], name
        assert got.l2 == pytest.approx(want["l2"], rel=1e-6, abs=1e-300)
    if device.count:  # without finite elements the fields are those of no element
        for name in ("mean", "m2", "min", "max", "l1"):
            assert math.isnan(getattr(device, name)), name
    assert device.zeros == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.empty(0),
        lambda: torch.empty(0, 5),
        lambda: torch.full((4, 3), math.nan),
        lambda: torch.tensor([[math.inf, -math.inf], [math.nan, math.inf]]),
        lambda: torch.tensor([[0.0, -0.0], [0.0, 0.0]]),
        lambda: torch.tensor([[1.0, math.nan], [math.nan, -2.0]], dtype=torch.bfloat16),
        lambda: torch.full((3, 2), 65504.0, dtype=torch.float16),
        lambda: torch.tensor(2.5),
    ],
    ids=["empty", "empty-units", "all-nan", "all-inf", "zeros", "bf16-nan", "f16-max", "0-d"],
)
@pytest.mark.parametrize("axis", [None, -1])
def test_degenerate_tensors_agree(make, axis):
    t = make()
    if axis is not None and t.dim() == 0:
        axis = None
    assert_paths_agree(t, axis, 0.0, None)
    assert_paths_agree(t, axis, 0.5, 0.0)


def test_float64_values_beyond_float32_agree():
    """A float64 tensor is read as float64 on both paths: values past float32's range are not
    infinite on the device, nor tiny ones zero (inactive)."""
    t = torch.tensor([[1e39, 2.0], [1e-50, -3e100], [0.0, math.nan]], dtype=torch.float64)
    assert_paths_agree(t, 1, 0.0, None)
    summary = on_device(t, 1, 0.0, None)
    assert (summary.nonfinite, summary.zeros) == (1, 1)
    assert summary.channel_active.tolist() == [2, 2]
    for level, absolute, want in ((1e-60, True, 4), (1e38, False, 1)):
        assert count_exceeding(t, level, absolute) == want
        assert int(count_exceeding_torch(t, level, absolute)) == want


def test_device_reducer_agrees_with_the_cpp_engine():
    data = batches("mlp", 3)
    results = []
    for force in (False, True):

        def factory(m, o, force=force):
            s = layerscope.watch(
                m,
                optimizer=o,
                lenses=[
                    lenses.Activations(
                        statistics=("mean", "std", "min", "max", "median", "histogram")
                    ),
                    lenses.GradientNorms(),
                    lenses.DeadUnits(window=2),
                ],
            )
            s.force_torch_reducer = force
            return s

        _, scope = train(mlp(), data, scope_factory=factory)
        results.append(scope.records())
    cpp, device = results

    def scalars(rs):
        return {
            (r.step, r.site, r.quantity, r.statistic): r.value for r in rs if r.histogram is None
        }  # noqa: E731

    a, b = scalars(cpp), scalars(device)
    assert a.keys() == b.keys()
    for key in a:
        if key[3] == "median":  # exact vs strided-sample quantile: same data here (small tensors)
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        else:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    hist = lambda rs: {(r.step, r.site): r.histogram.counts for r in rs if r.histogram is not None}  # noqa: E731
    assert hist(cpp) == hist(device)
