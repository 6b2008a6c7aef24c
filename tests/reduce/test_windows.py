"""The window builder's merges: a site observed in several calls of one step is one observation.

A step in which the same site is added several times (a module called twice, the micro-batches
of gradient accumulation, each its own forward pass) must give the window one observation of
the concatenated tensors gives: the moments, the quantiles (the exact quantile buffer) and the
histogram counts, on the host (C++ kernel) and on the torch-op path alike; and both against
numpy.
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
from layerscope.records import select
from layerscope.reduce import Needs, WindowBuilder
from layerscope.reduce.windows import PENDING_LIMIT
from layerscope.stats.tensors import QUANTILE_LEVELS
from oracle import assert_summary, fields, summary_oracle

NEEDS = Needs(quantiles=True, histogram=True, activity=True)
SITE = "fc:output"


def window(parts: list[torch.Tensor], force_torch: bool, passes: bool, threshold=None):
    """The window of one step in which `parts` were observed at one site, one call each.

    `passes`: each call in a forward pass of its own (gradient accumulation), else all in one.
    """
    builder = WindowBuilder(force_torch=force_torch)
    for part in parts:
        if passes:
            builder.begin_forward()
        builder.add("fc", "output", SITE, part, NEEDS, 1, threshold)
        if passes:
            builder.end_forward()
    builder.close_step(0, 0)
    (ready,) = builder.ready()
    return ready.windows[SITE]


def histogram_oracle(x: np.ndarray, edges: np.ndarray) -> tuple[list[int], int, int]:
    """numpy.histogram's counts over `edges` in the [lo, hi) convention; under- and overflow."""
    finite = x[np.isfinite(x)]
    counts, _ = np.histogram(finite, bins=edges)
    counts[-1] -= int(np.count_nonzero(finite == edges[-1]))
    return counts.tolist(), int((x < edges[0]).sum()), int((x >= edges[-1]).sum())


def assert_same_window(got, want) -> None:
    """Two windows equal: summaries to rounding, quantiles and histogram counts exactly."""
    assert_summary(fields(got.summary), fields(want.summary))
    if want.quantiles is None:
        assert got.quantiles is None
    else:  # NaN equal to NaN: quantiles of +Inf alone are NaN, as numpy's
        assert got.quantiles.keys() == want.quantiles.keys()
        np.testing.assert_array_equal(list(got.quantiles.values()), list(want.quantiles.values()))
    assert got.histogram == want.histogram


@st.composite
def observations(draw: st.DrawFn) -> list[torch.Tensor]:
    """Two to four float32 batches of one site's output (rows x 3 units); some rows empty."""
    elements = st.floats(-1e5, 1e5, width=32) | st.sampled_from([0.0, math.nan, math.inf])
    rows = st.integers(0, 30)
    arrays = draw(
        st.lists(
            rows.flatmap(lambda n: hnp.arrays(np.float32, (n, 3), elements=elements)),
            min_size=2,
            max_size=4,
        )
    )
    return [torch.from_numpy(a) for a in arrays]


@pytest.mark.parametrize("passes", [False, True], ids=["one-pass", "forward-passes"])
@pytest.mark.parametrize("force_torch", [False, True], ids=["host", "torch-ops"])
@settings(max_examples=40, deadline=None)
@given(parts=observations())
def test_several_calls_are_one_observation_of_the_concatenation(parts, force_torch, passes):
    whole = torch.cat(parts)
    got = window(parts, force_torch, passes)
    assert_same_window(got, window([whole], force_torch, passes=False))
    assert_summary(fields(got.summary), summary_oracle(whole, 1))
    x = whole.double().numpy().ravel()
    counts, underflow, overflow = histogram_oracle(x, np.asarray(got.histogram.edges))
    assert list(got.histogram.counts) == counts
    assert (got.histogram.underflow, got.histogram.overflow) == (underflow, overflow)
    finite = x[np.isfinite(x)]
    if finite.size == x[~np.isnan(x)].size and finite.size:  # numpy's quantiles need no Inf
        want = np.quantile(finite, QUANTILE_LEVELS)
        np.testing.assert_allclose([got.quantiles[q] for q in QUANTILE_LEVELS], want, rtol=1e-6)
    elif not x[~np.isnan(x)].size:
        assert got.quantiles is None


@pytest.mark.parametrize("force_torch", [False, True], ids=["host", "torch-ops"])
def test_host_and_torch_op_windows_agree(force_torch):
    g = torch.Generator().manual_seed(3)
    parts = [torch.randn(17, 3, generator=g) * 4, torch.randn(0, 3), torch.randn(9, 3, generator=g)]
    parts[0][2, 1] = math.nan
    parts[2][0, 0] = -math.inf
    assert_same_window(window(parts, force_torch, True), window(parts, not force_torch, False))


def test_module_used_twice_counts_both_calls():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.shared(torch.relu(self.shared(x)))

    model = Twice()
    x = torch.randn(3, 4)
    with layerscope.watch(model, lenses=[lenses.Activations(statistics=("mean", "max"))]) as scope:
        model(x).sum().backward()
        scope.step()
    first = model.shared(x)
    second = model.shared(torch.relu(first))
    both = torch.cat([first, second]).detach()
    (mean,) = select(scope.records(), site="shared:output", statistic="mean")
    (largest,) = select(scope.records(), site="shared:output", statistic="max")
    assert mean.value == pytest.approx(both.mean().item(), rel=1e-6)
    assert largest.value == pytest.approx(both.max().item())


def test_past_the_pending_limit_host_summaries_are_merged_exactly():
    """A step that never closes keeps at most PENDING_LIMIT observations of a site apart; the
    host summaries past it are merged, so the window is still that of the concatenation."""
    g = torch.Generator().manual_seed(4)
    parts = [torch.randn(2, 3, generator=g) * (1 + i % 7) for i in range(PENDING_LIMIT + 45)]
    got = window(parts, force_torch=False, passes=False)
    whole = torch.cat(parts)
    assert_same_window(got, window([whole], force_torch=False, passes=False))
    assert_summary(fields(got.summary), summary_oracle(whole, 1))
