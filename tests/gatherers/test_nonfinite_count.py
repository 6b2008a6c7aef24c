"""The per-step NaN search's count, against torch.isfinite, on every dtype, layout and size."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.dlpack import to_dlpack

from layerscope import _core
from layerscope.gatherers import nonfinite
from layerscope.gatherers.nonfinite import TORCH_SUM_FROM, nonfinite_count

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def hostile(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Normal values with NaN, +/-Inf, zeros, subnormals and float32's largest, scattered."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 10
    pick = torch.randint(0, 12, shape, generator=g)
    specials = [math.nan, math.inf, -math.inf, 0.0, 1e-40, 3.4e38]
    for i, value in enumerate(specials):
        x[pick == i] = value
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (64, 33), (3, 5, 7, 11)])
def test_the_engine_counts_what_isfinite_rejects(dtype, shape):
    x = hostile(shape, seed=sum(shape)).to(dtype)  # float16 turns 3.4e38 into inf, as it should
    expected = int((~torch.isfinite(x)).sum())
    assert _core.count_nonfinite(to_dlpack(x), 2) == expected
    assert nonfinite_count(x) == expected


@pytest.mark.parametrize("dtype", DTYPES)
def test_views_count_the_elements_they_show(dtype):
    base = hostile((40, 30), seed=5).to(dtype)
    for view in (base.t(), base[::3, 1::2], base.flip(0), base[:1].expand(7, 30)):
        expected = int((~torch.isfinite(view)).sum())
        assert nonfinite_count(view) == expected


@pytest.mark.parametrize("lent", [True, False], ids=["torch's threads", "own threads"])
@pytest.mark.parametrize("size", [TORCH_SUM_FROM - 1, TORCH_SUM_FROM + 3])
def test_large_tensors_are_counted_exactly_and_a_huge_finite_sum_is_clean(size, lent, monkeypatch):
    if not lent:  # the engine's own threads, after a torch sum from TORCH_SUM_FROM
        monkeypatch.setattr(nonfinite, "TEAM", None)
    huge = torch.full((size,), 3e38)  # every element finite; their sum overflows
    assert nonfinite_count(huge) == 0
    huge[::1000] = math.nan
    huge[7] = -math.inf
    assert nonfinite_count(huge) == int((~torch.isfinite(huge)).sum())


def test_a_gradient_tensor_is_counted_without_touching_autograd():
    x = hostile((8, 8), seed=2).requires_grad_()
    assert nonfinite_count(x) == int((~torch.isfinite(x.detach())).sum())
    assert x.grad is None
