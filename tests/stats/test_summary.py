"""layerscope.stats.summarize against a numpy oracle, then a hostile-input harness."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import layerscope.stats.summary as summary_module
from layerscope.stats import Summary, summarize

# Float32, float16 and bfloat16 input is accumulated in float over short stretches, then in
# double (see summary.hpp): agreement to 1e-6 of the data's scale; float64 input to 1e-9.
FLOAT_RTOL = 1e-6
DOUBLE_RTOL = 1e-9
SCALARS = ("sum", "sum_sq", "mean", "m2", "min", "max", "l1", "l2", "variance", "std")
COUNTS = ("size", "count", "zeros", "nan", "pos_inf", "neg_inf", "nonfinite")


def oracle(x: np.ndarray, channel_axis=None, eps=0.0, threshold=None) -> dict:
    """Every field of a Summary, computed by numpy in float64, and the tolerance for x's dtype."""
    precise = np.asarray(x).dtype == np.float64
    x = np.asarray(x, dtype=np.float64)
    if channel_axis is None:
        per_channel = x.reshape(1, x.size)
    else:
        moved = np.moveaxis(x, channel_axis, 0)
        per_channel = moved.reshape(moved.shape[0], math.prod(moved.shape[1:]))
    finite = x[np.isfinite(x)]
    n = finite.size
    mean = finite.mean() if n else math.nan
    active = per_channel > threshold if threshold is not None else np.abs(per_channel) > eps
    masked = np.where(np.isfinite(per_channel), per_channel, 0.0)
    return {
        "rtol": DOUBLE_RTOL if precise else FLOAT_RTOL,
        "size": x.size,
        "count": n,
        "sum": finite.sum(),
        "sum_sq": (finite**2).sum(),
        "mean": mean,
        "m2": ((finite - mean) ** 2).sum() if n else 0.0,
        "min": finite.min() if n else math.nan,
        "max": finite.max() if n else math.nan,
        "l1": np.abs(finite).sum(),
        "l2": math.sqrt((finite**2).sum()),
        "variance": finite.var() if n else math.nan,
        "std": finite.std() if n else math.nan,
        "zeros": int((finite == 0).sum()),
        "nan": int(np.isnan(x).sum()),
        "pos_inf": int((x == np.inf).sum()),
        "neg_inf": int((x == -np.inf).sum()),
        "nonfinite": int((~np.isfinite(x)).sum()),
        "channel_count": np.isfinite(per_channel).sum(axis=1),
        "channel_active": active.sum(axis=1),
        "channel_sum": masked.sum(axis=1),
        "channel_sum_sq": (masked**2).sum(axis=1),
    }


def assert_matches(s: Summary, want: dict, rtol: float | None = None) -> None:
    rtol = want["rtol"] if rtol is None else rtol
    scale = max(want["l1"], 1e-300)
    for name in COUNTS:
        assert getattr(s, name) == want[name], name
    for name in SCALARS:
        got, expected = getattr(s, name), want[name]
        if math.isnan(expected):
            assert math.isnan(got), name
        else:
            # Absolute part scaled to the data: m2 of near-constants, sums that cancel.
            atol = rtol * (want["sum_sq"] if name in ("m2", "variance") else scale)
            assert got == pytest.approx(expected, rel=rtol, abs=atol), name
    assert s.channels == len(want["channel_count"])
    np.testing.assert_array_equal(s.channel_count, want["channel_count"])
    np.testing.assert_array_equal(s.channel_active, want["channel_active"])
    np.testing.assert_allclose(s.channel_sum, want["channel_sum"], rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(s.channel_sum_sq, want["channel_sum_sq"], rtol=rtol)


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((1000,), None), ((64, 33), 1), ((5, 7, 130), 0), ((3, 40, 6), -2), ((2, 3, 4, 5), 3)],
)
def test_every_field_matches_numpy(dtype, shape, axis):
    x = (RNG.standard_normal(shape) * 3 + 0.5).astype(dtype)
    x.flat[::17] = 0
    assert_matches(summarize(x, channel_axis=axis), oracle(x, axis))


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "stepped"])
@pytest.mark.parametrize(("shape", "axis"), [((64, 33), 1), ((16, 6, 9, 9), 1), ((2100, 600), 1)])
@pytest.mark.parametrize("threshold", [None, 0.0])
def test_without_channel_sums_only_the_activity_counts_stay(shape, axis, layout, threshold):
    x = (RNG.standard_normal(shape) * 2).astype(np.float32)
    x.flat[::13] = 0
    x.flat[5] = np.nan
    if layout == "transposed":
        x, axis = np.moveaxis(x, axis, 0), 0
    elif layout == "stepped":
        x = x[::2]
    want = oracle(x, axis, eps=0.5, threshold=threshold)
    s = summarize(x, channel_axis=axis, eps=0.5, threshold=threshold, channel_sums=False)
    np.testing.assert_array_equal(s.channel_active, want["channel_active"])
    assert s.channels == len(want["channel_active"])
    assert s.channel_count.size == s.channel_sum.size == s.channel_sum_sq.size == 0
    for name in COUNTS:
        assert getattr(s, name) == want[name], name
    for name in ("mean", "l2", "min", "max", "m2"):
        assert getattr(s, name) == pytest.approx(want[name], rel=1e-5, abs=1e-5), name


def test_large_tensor_uses_every_core_and_still_matches():
    x = RNG.standard_normal((2100, 1000)).astype(np.float32)
    assert_matches(summarize(x, channel_axis=1), oracle(x, 1))
    assert_matches(summarize(x.T, channel_axis=0), oracle(x.T, 0))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.T,
        lambda a: a[::3, 1::2],
        lambda a: np.flip(a, axis=1),
        lambda a: np.flip(a)[::-2],
        lambda a: np.broadcast_to(a[:1], a.shape),
    ],
    ids=["transposed", "stepped", "flipped", "flipped-stepped", "broadcast"],
)
def test_non_contiguous_views(make):
    x = make(RNG.standard_normal((90, 70)).astype(np.float32))
    assert not x.flags.c_contiguous
    assert_matches(summarize(x, channel_axis=1), oracle(x, 1))


def test_activity_by_eps_and_threshold():
    x = np.array([[-2.0, 0.0, 0.3], [0.7, -0.1, np.nan], [np.inf, -np.inf, 0.0]])
    assert summarize(x, channel_axis=1).channel_active.tolist() == [3, 2, 1]
    assert summarize(x, channel_axis=1, eps=0.5).channel_active.tolist() == [3, 1, 0]
    assert summarize(x, channel_axis=0, threshold=0.0).channel_active.tolist() == [1, 1, 1]
    assert_matches(summarize(x, 1, threshold=-0.2), oracle(x, 1, threshold=-0.2))


# --- hostile inputs ---------------------------------------------------------------------------


def test_all_nan():
    s = summarize(np.full((4, 5), np.nan, dtype=np.float32), channel_axis=0)
    assert (s.count, s.nan, s.nonfinite) == (0, 20, 20)
    assert math.isnan(s.mean)
    assert math.isnan(s.min)
    assert math.isnan(s.variance)
    assert s.sum == 0.0
    assert s.m2 == 0.0
    assert s.l2 == 0.0
    assert s.channel_active.tolist() == [0] * 4


def test_mixed_infinities_do_not_poison_the_rest():
    x = RNG.standard_normal(10_000).astype(np.float32)
    x[::7] = np.inf
    x[3::11] = -np.inf
    x[5::13] = np.nan
    s = summarize(x)
    assert s.pos_inf + s.neg_inf + s.nan == s.nonfinite == s.size - s.count > 0
    assert all(math.isfinite(getattr(s, f)) for f in SCALARS)
    assert_matches(s, oracle(x))


def test_magnitudes_near_float32_max_do_not_overflow():
    x = np.full(10_000, 3.0e38, dtype=np.float32)
    x[::2] = -3.0e38
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(x * x))  # float32 squares overflow ...
    s = summarize(x)  # ... doubles do not
    assert s.pos_inf == 0
    assert math.isfinite(s.sum_sq)
    assert_matches(s, oracle(x))
    assert s.std == pytest.approx(np.float64(3.0e38).astype(np.float32).astype(float), rel=1e-9)


def test_subnormals():
    x = np.array([1e-45, -1e-45, 1e-40, 0.0, 5e-39] * 1000, dtype=np.float32)
    assert_matches(summarize(x), oracle(x))
    assert summarize(x).zeros == 1000


@pytest.mark.parametrize("value", [0.1, -7.25, 1e30, 0.0])
def test_constants_have_zero_variance(value):
    x = np.full(12_345, value, dtype=np.float32)
    s = summarize(x)
    assert s.variance == 0.0 or s.variance <= 1e-12 * value * value
    assert s.mean == pytest.approx(float(np.float32(value)), rel=1e-15)
    assert s.min == s.max == float(np.float32(value))


ADVERSARIAL = {
    "offset": lambda r, n: 1e4 + r.standard_normal(n),
    "tiny-spread-offset": lambda r, n: 1e3 + 1e-3 * r.standard_normal(n),
    "dynamic-range": lambda r, n: r.choice([-1.0, 1.0], n) * 10.0 ** r.uniform(-30, 30, n),
    "periodic-outliers": lambda r, n: np.where(np.arange(n) % 512 == 0, 1e8, r.standard_normal(n)),
    "tiny": lambda r, n: 1e-25 * r.standard_normal(n),
    "huge": lambda r, n: 1e25 * r.standard_normal(n),
    "zeros-then-tiny": lambda r, n: np.where(
        np.arange(n) % 4096 < 600, 0.0, 1e-22 * r.standard_normal(n)
    ),
    "ramp": lambda r, n: np.linspace(0.0, 1e3, n),
    "cauchy": lambda r, n: r.standard_cauchy(n),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_float_accumulation_stays_accurate_on_adversarial_data(case):
    """Errors of the float-lane kernel against float64 on data built to hurt it: measured worst
    case is 4e-7 (sum_sq and m2 of periodic 1e8 outliers); typical data gives ~1e-9."""
    x = ADVERSARIAL[case](np.random.default_rng(5), 300_000).astype(np.float32)
    s, d = summarize(x), x.astype(np.float64)
    mean = d.mean()
    m2 = ((d - mean) ** 2).sum()
    l1 = np.abs(d).sum()
    sum_sq = (d * d).sum()
    assert abs(s.sum - d.sum()) <= 5e-7 * l1
    assert abs(s.mean - mean) <= 5e-7 * l1 / d.size
    assert abs(s.l1 - l1) <= 5e-7 * l1
    assert abs(s.sum_sq - sum_sq) <= 1e-6 * sum_sq
    assert abs(s.l2 - math.sqrt(sum_sq)) <= 5e-7 * math.sqrt(sum_sq)
    assert abs(s.m2 - m2) <= 1e-6 * m2
    assert (s.min, s.max) == (d.min(), d.max())


def test_one_element_and_zero_elements():
    one = summarize(np.array([2.5]))
    assert (one.count, one.mean, one.variance, one.min, one.max) == (1, 2.5, 0.0, 2.5, 2.5)
    assert summarize(np.float32(4.0)).l2 == 4.0  # 0-d
    empty = summarize(np.zeros((0, 6), dtype=np.float32), channel_axis=1)
    assert (empty.size, empty.count, empty.channels) == (0, 0, 6)
    assert math.isnan(empty.mean)
    assert math.isnan(empty.std)
    assert empty.channel_count.tolist() == [0] * 6
    assert "count=0" in repr(empty)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_tensors_of_every_float_dtype(dtype):
    t = torch.randn(300, 40, generator=torch.Generator().manual_seed(1)).to(dtype)
    t[0, 0] = float("nan")
    want = oracle(t.double().numpy(), 1)
    rtol = DOUBLE_RTOL if dtype == torch.float64 else FLOAT_RTOL
    assert_matches(summarize(t, channel_axis=1), want, rtol)
    assert_matches(summarize(t.t(), channel_axis=0), want, rtol)


def test_large_bfloat16_tensor():
    t = torch.randn(3_000_000, generator=torch.Generator().manual_seed(2)).bfloat16()
    t[123_456] = float("inf")
    assert_matches(summarize(t), oracle(t.double().numpy()), FLOAT_RTOL)


def test_tensor_that_requires_grad_is_read_without_copy_or_graph():
    w = torch.randn(20, 10, requires_grad=True)
    s = summarize(w * 2, channel_axis=0)
    assert_matches(s, oracle((w * 2).detach().numpy(), 0))  # float32 numpy: FLOAT_RTOL
    assert w.grad is None


@pytest.mark.parametrize(
    ("array", "name"),
    [
        (np.arange(10, dtype=np.int32), "int32"),
        (np.ones(3, dtype=bool), "bool"),
        (np.ones(3, dtype=np.complex64), "complex64"),
        (torch.arange(5), "int64"),
        (np.ones(3, dtype=np.uint8), "uint8"),
    ],
)
def test_non_float_input_is_a_type_error_naming_the_dtype(array, name):
    with pytest.raises(TypeError, match=name):
        summarize(array)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_tensors_are_refused():
    with pytest.raises(TypeError, match="cuda"):
        summarize(torch.ones(3, device="cuda"))


@pytest.mark.parametrize("axis", [2, -3, 10])
def test_channel_axis_out_of_range(axis):
    with pytest.raises(ValueError, match="channel_axis"):
        summarize(np.ones((3, 4), dtype=np.float32), channel_axis=axis)


@pytest.mark.parametrize("kwargs", [{"eps": -1e-3}, {"eps": math.nan}, {"threshold": math.nan}])
def test_bad_activity_options(kwargs):
    with pytest.raises(ValueError, match="eps|threshold"):
        summarize(np.ones(3), **kwargs)


def test_repr_and_read_only():
    s = summarize(np.array([1.0, 2.0, np.nan], dtype=np.float32))
    assert repr(s).startswith("Summary(size=3, count=2, mean=1.5")
    with pytest.raises(AttributeError):
        s.mean = 0.0


def test_docstring_examples_run():
    assert doctest.testmod(summary_module).failed == 0
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(Summary, "Summary", globs=vars(summary_module)):
        runner.run(test)
    assert runner.failures == 0


# --- random shapes and channel axes against the oracle ----------------------------------------


@st.composite
def arrays_with_axis(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9))
    elements = st.floats(-1e4, 1e4, width=np.dtype(dtype).itemsize * 8) | st.sampled_from(
        [0.0, np.nan, np.inf, -np.inf]
    )
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    axis = draw(st.none() | st.integers(-x.ndim, x.ndim - 1))
    if draw(st.booleans()):
        x = x.T
        axis = None if axis is None else x.ndim - 1 - (axis % x.ndim)
    return x, axis, draw(st.sampled_from([0.0, 0.5, 100.0]))


@settings(max_examples=150, deadline=None)
@given(arrays_with_axis())
def test_random_shapes_and_axes_against_numpy(case):
    x, axis, eps = case
    assert_matches(summarize(x, channel_axis=axis, eps=eps), oracle(x, axis, eps=eps))


# --- broadcast views: read in the time of their distinct memory --------------------------------


def _repeated(want: dict, times: int) -> dict:
    """The oracle of a buffer seen `times` over: counts and sums scale, mean/min/max stay."""
    scaled = dict(want)
    for name in (*COUNTS, "sum", "sum_sq", "m2", "l1"):
        scaled[name] = want[name] * times
    scaled["l2"] = math.sqrt(scaled["sum_sq"])
    for name in ("channel_count", "channel_active", "channel_sum", "channel_sum_sq"):
        scaled[name] = want[name] * times
    return scaled


@pytest.mark.parametrize("size", [2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**48, 2**62])
def test_a_broadcast_scalar_of_any_size_is_summarized_at_once(size):
    s = summarize(torch.ones(1).expand(size))
    assert (s.size, s.count, s.zeros, s.nonfinite) == (size, size, 0, 0)
    assert (s.mean, s.min, s.max, s.m2, s.variance) == (1.0, 1.0, 1.0, 0.0, 0.0)
    assert s.sum == s.sum_sq == s.l1 == float(size)
    assert s.l2 == math.sqrt(size)


@pytest.mark.parametrize("axis", [None, 0, 2, -1])
def test_broadcast_views_match_numpy_on_the_materialized_array(axis):
    base = torch.randn(3, 1, 5, dtype=torch.float64)
    base[0, 0, 1] = 0.0
    base[2, 0, 3] = math.nan
    view = base.expand(3, 700, 5)
    assert_matches(summarize(view, channel_axis=axis), oracle(view.numpy().copy(), axis))
    huge = base.expand(3, 2**40, 5)
    assert_matches(summarize(huge, channel_axis=axis), _repeated(oracle(base.numpy(), axis), 2**40))


def test_a_broadcast_channel_axis_keeps_one_entry_per_channel():
    base = torch.tensor([[1.0], [0.0], [-2.0]])
    view = base.expand(3, 9)  # the channel axis (1) has stride 0: nine equal channels
    assert_matches(summarize(view, channel_axis=1), oracle(view.numpy().copy(), 1))
