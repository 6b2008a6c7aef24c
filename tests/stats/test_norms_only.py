"""Norms-only summaries: a site whose lenses read only its L2 norm and counts, against numpy.

``summarize_norms_cpu`` reads a tensor for its sum of squares alone (``_core.sum_of_squares``);
its norm and counts must be those of the full summary, for every dtype and layout the engine
reads, and a tensor holding a NaN or an infinity must get the full summary, counts and all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.dlpack import to_dlpack

from layerscope import _core
from layerscope.stats import SiteSummary
from layerscope.stats.tensors import summarize_cpu, summarize_norms_cpu
from oracle import FLOAT_RTOL, assert_summary, fields, summary_oracle

NOT_COMPUTED = ("mean", "m2", "min", "max", "l1")


def squares_oracle(t: torch.Tensor) -> float:
    """The sum of squares of `t`'s values as stored, in float64."""
    x = t.detach().double().numpy()
    return float((x * x).sum())


def layouts(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Tensors of `dtype` in every layout the kernel reads: sizes around its vector widths and
    its flush length, past the size where it reads on several threads, strided and broadcast."""
    g = torch.Generator().manual_seed(3)
    out = {f"contiguous {n}": torch.randn(n, generator=g).to(dtype) for n in (1, 7, 8, 33, 129)}
    out["rows"] = (torch.randn(257, 129, generator=g) * 40).to(dtype)
    out["threaded"] = torch.randn((1 << 21) + 5, generator=g).to(dtype)
    out["columns"] = torch.randn(300, 70, generator=g).to(dtype)[:, ::3]
    out["transposed"] = torch.randn(64, 48, generator=g).to(dtype).t()
    out["broadcast"] = torch.randn(1, 37, generator=g).to(dtype).expand(50, 37)
    out["small values"] = (torch.randn(1000, generator=g) * 1e-12).to(dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_sum_of_squares_matches_numpy_in_every_layout(dtype: torch.dtype) -> None:
    for name, t in layouts(dtype).items():
        want = squares_oracle(t)
        for threads in (1, 2):
            got = _core.sum_of_squares(to_dlpack(t), threads)
            assert got == pytest.approx(want, rel=FLOAT_RTOL, abs=1e-300), (name, threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_norms_only_summary_holds_the_full_summarys_norm_and_counts(dtype: torch.dtype) -> None:
    for name, t in layouts(dtype).items():
        got = summarize_norms_cpu(t)
        want = summary_oracle(t)
        for field in ("size", "count", "nonfinite"):
            assert getattr(got, field) == want[field], (name, field)
        assert got.l2 == pytest.approx(want["l2"], rel=FLOAT_RTOL, abs=1e-300), name
        assert got.zeros == 0, name
        for field in NOT_COMPUTED:
            assert math.isnan(getattr(got, field)), (name, field)


@pytest.mark.parametrize(
    "poison",
    [math.nan, math.inf, -math.inf, 1e30],  # 1e30 squared overflows float32
    ids=["nan", "inf", "-inf", "float32 square overflow"],
)
@pytest.mark.parametrize("where", [0, 4097, (1 << 21) - 1])
def test_a_tensor_with_a_nonfinite_square_gets_the_full_summary(poison: float, where: int) -> None:
    t = torch.randn(1 << 21, generator=torch.Generator().manual_seed(5))
    t[where] = poison
    got = summarize_norms_cpu(t)
    assert_summary(fields(got), summary_oracle(t))
    assert fields(got) == fields(summarize_cpu(t, None, 0.0, None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("scale", [1e-18, 1e-22, 1e-30, 0.0])
def test_vanishing_values_get_the_full_summary_and_their_exact_norm(
    dtype: torch.dtype, scale: float
) -> None:
    """Squares in float underflow below ~1e-19: a vanishing gradient's norm must not."""
    t = (torch.randn(4096, generator=torch.Generator().manual_seed(2)) * scale).to(dtype)
    got = summarize_norms_cpu(t)
    assert_summary(fields(got), summary_oracle(t))
    if scale:
        assert got.l2 == pytest.approx(math.sqrt(squares_oracle(t)), rel=FLOAT_RTOL)


def test_norms_only_summaries_merge_to_the_norm_and_counts_of_the_whole() -> None:
    g = torch.Generator().manual_seed(9)
    parts = [torch.randn(n, generator=g) * s for n, s in ((100, 1.0), (3000, 0.01), (7, 50.0))]
    parts.append(torch.tensor([1.0, math.nan, -math.inf]))  # a full summary among them
    merged = SiteSummary.merge_all([summarize_norms_cpu(p) for p in parts])
    want = summary_oracle(torch.cat(parts))
    for field in ("size", "count", "nonfinite"):
        assert getattr(merged, field) == want[field], field
    assert merged.l2 == pytest.approx(want["l2"], rel=FLOAT_RTOL)


@pytest.mark.parametrize("bad", [np.arange(4), np.zeros(3, dtype=np.complex64)])
def test_sum_of_squares_rejects_what_it_cannot_read(bad: np.ndarray) -> None:
    with pytest.raises(TypeError, match="sum_of_squares"):
        _core.sum_of_squares(bad)
