"""The optimizer gatherer's extremes-and-count pass (Adam's step-size extremes and eps
dominance come from it), on the C++ and torch-op paths, against numpy.
"""

from __future__ import annotations

import math

import torch

from layerscope.stats.tensors import extremes_and_count_below, extremes_and_count_below_torch


def test_extremes_and_count_below_match_numpy_on_both_paths():
    # The C++ pass (CPU) and the torch ops (other devices) against numpy, NaN and Inf included.
    x = torch.tensor([3.0, -1.0, math.nan, 0.5, math.inf, 2.0, 1e-30, 0.0])
    level = 0.5
    finite = x[~torch.isnan(x)].numpy()
    want = (finite.min(), finite.max(), int((finite < level).sum()), int((finite == 0).sum()))
    assert extremes_and_count_below(x, level) == want
    extremes, below, zeros = extremes_and_count_below_torch(x, level)
    assert extremes.tolist() == [want[0], want[1]]
    assert (int(below), int(zeros)) == want[2:]
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        y = x.to(dtype)
        lo, hi, count, zero_count = extremes_and_count_below(y, level)
        extremes, below, zeros = extremes_and_count_below_torch(y, level)
        assert [lo, hi] == extremes.tolist()
        assert (count, zero_count) == (int(below), int(zeros))
    # An element exactly at the level is not below it; a level between two float32 values
    # splits them as in real numbers.
    z = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float32)
    assert extremes_and_count_below(z, 0.5)[2] == 1
    assert extremes_and_count_below(z, 0.5000000001)[2] == 2
    nan = torch.full((4,), math.nan)
    assert all(math.isnan(v) for v in extremes_and_count_below(nan, 1.0)[:2])
    assert extremes_and_count_below(nan, 1.0)[2] == 0
    extremes, below, _ = extremes_and_count_below_torch(nan, 1.0)
    assert torch.isnan(extremes).all()
    assert int(below) == 0
