"""Moments and ChannelMoments against numpy, on random and hostile input; merge laws; bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.stats import ChannelMoments, Histogram, Moments

RNG = np.random.default_rng(20240601)
TORCH_RNG = torch.Generator().manual_seed(20240601)


def reference(values: np.ndarray) -> dict[str, float]:
    """numpy's view of the finite values, in float64."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    out = {"count": finite.size, "nonfinite": x.size - finite.size}
    if finite.size:
        out |= {
            "mean": np.mean(finite),
            "variance": np.var(finite),
            "min": finite.min(),
            "max": finite.max(),
            "sum": finite.sum(),
            "sum_sq": np.sum(finite * finite),
        }
        if finite.size > 1:
            out["sample_variance"] = np.var(finite, ddof=1)
    return out


def assert_matches(m: Moments, values: np.ndarray, rtol: float = 1e-12) -> None:
    ref = reference(values)
    assert m.count == ref["count"]
    assert m.nonfinite == ref["nonfinite"]
    if ref["count"] == 0:
        assert all(np.isnan(v) for v in (m.mean, m.variance, m.std, m.min, m.max))
        assert m.sum == 0.0
        assert m.sum_sq == 0.0
        return
    finite = np.asarray(values, dtype=np.float64).ravel()
    scale = float(np.max(np.abs(finite[np.isfinite(finite)])))
    assert m.min == ref["min"]
    assert m.max == ref["max"]
    assert m.mean == pytest.approx(ref["mean"], rel=rtol, abs=1e-15 * scale)
    # A variance is only as good as the mean beside it: allow for the offset's rounding.
    var_atol = 1e-13 * scale * scale + 1e-300
    assert m.variance == pytest.approx(ref["variance"], rel=1e-9, abs=var_atol)
    assert m.std == pytest.approx(np.sqrt(ref["variance"]), rel=1e-9, abs=np.sqrt(var_atol))
    if ref["count"] > 1:
        assert m.sample_variance == pytest.approx(ref["sample_variance"], rel=1e-9, abs=var_atol)
    else:
        assert np.isnan(m.sample_variance)
    assert m.sum == pytest.approx(ref["sum"], rel=1e-12, abs=1e-12 * scale * ref["count"])
    assert m.sum_sq == pytest.approx(ref["sum_sq"], rel=1e-12)


def moments_of(values: object) -> Moments:
    m = Moments()
    m.update(values)
    return m


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_random_numpy_dtypes(dtype: type) -> None:
    x = (RNG.standard_normal(10_007) * 3 + 5).astype(dtype)
    assert_matches(moments_of(x), x)


def test_bfloat16_tensor() -> None:
    x = torch.randn(3000, dtype=torch.bfloat16, generator=TORCH_RNG) * 100
    assert_matches(moments_of(x), x.double().numpy())


def test_tensor_that_requires_grad() -> None:
    x = torch.randn(100, requires_grad=True, generator=TORCH_RNG)
    assert_matches(moments_of(x), x.detach().double().numpy())


HOSTILE = {
    "all_nan": np.full(50, np.nan),
    "mixed_inf": np.array([np.inf, -np.inf, 1.0, np.nan, -2.0, np.inf]),
    "huge_float32": np.array([3e38, -3e38, 1e38, 3.4e38], dtype=np.float32),
    "subnormal_float32": np.array([1e-45, 3e-45, -1e-44, 0.0], dtype=np.float32),
    "subnormal_float64": np.array([5e-324, 1e-320, 2.5e-310]),
    "constant": np.full(9999, 0.1),
    "one": np.array([7.25]),
    "zero_elements": np.zeros(0),
    "zero_rows": np.zeros((0, 5), dtype=np.float32),
    "zero_d": np.array(2.5),
    "large_offset": 1e6 + RNG.standard_normal(5000) * 1e-3,
    "half_extremes": np.array([65504, -65504, 6e-8, np.inf], dtype=np.float16),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input(name: str) -> None:
    x = HOSTILE[name]
    assert_matches(moments_of(x), x)


def test_constant_has_zero_variance() -> None:
    m = moments_of(np.full(100_000, 0.1))
    assert m.mean == 0.1
    assert m.variance == pytest.approx(0.0, abs=1e-30)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a.T,
        lambda a: a[::3, 1::2],
        lambda a: a[::-1, ::-2],
        lambda a: np.broadcast_to(a[:1], (5, a.shape[1])),
    ],
    ids=["transposed", "stepped", "reversed", "broadcast"],
)
def test_non_contiguous_numpy_views(view: object) -> None:
    x = view(RNG.standard_normal((64, 33)).astype(np.float32))
    assert not x.flags.c_contiguous
    assert_matches(moments_of(x), np.array(x))


@pytest.mark.parametrize(
    "view",
    [lambda t: t.T, lambda t: t[::3, 1::2], lambda t: t[:1].expand(5, -1), lambda t: t[:, 7]],
    ids=["transposed", "stepped", "expanded", "column"],
)
def test_non_contiguous_tensor_views(view: object) -> None:
    t = view(torch.randn(64, 33, dtype=torch.float64, generator=TORCH_RNG))
    assert_matches(moments_of(t), t.numpy())


def test_python_numbers_and_lists() -> None:
    m = Moments()
    m.update(1)
    m.update(2.5)
    m.update([3.0, float("nan")])
    assert_matches(m, np.array([1, 2.5, 3.0, np.nan]))


@pytest.mark.parametrize(
    "bad",
    [np.arange(5), np.zeros(3, dtype=np.complex64), torch.zeros(3, dtype=torch.int32), True],
)
def test_wrong_dtype_is_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        Moments().update(bad)


def test_merge_type_errors() -> None:
    with pytest.raises(TypeError, match="expected a Moments"):
        Moments().merge(ChannelMoments(2))
    with pytest.raises(TypeError, match="expected a ChannelMoments"):
        ChannelMoments(2).merge(Moments())


# --- ChannelMoments ----------------------------------------------------------------------------


def per_channel_reference(x: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0).reshape(x.shape[axis], -1)
    rows = [reference(row) for row in moved]
    keys = ("count", "nonfinite", "mean", "variance", "min", "max", "sum")
    empty = {"sum": 0.0}  # an empty channel's sum is 0, its other statistics NaN
    return {k: np.array([r.get(k, empty.get(k, np.nan)) for r in rows]) for k in keys}


def assert_channels_match(cm: ChannelMoments, x: np.ndarray, axis: int) -> None:
    ref = per_channel_reference(x, axis)
    np.testing.assert_array_equal(cm.count, ref["count"])
    np.testing.assert_array_equal(cm.nonfinite, ref["nonfinite"])
    np.testing.assert_array_equal(cm.min, ref["min"])
    np.testing.assert_array_equal(cm.max, ref["max"])
    np.testing.assert_allclose(cm.mean, ref["mean"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cm.variance, ref["variance"], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(cm.std, np.sqrt(ref["variance"]), rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(cm.sum, ref["sum"], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((200, 7), -1),
        ((200, 7), 1),
        ((9, 200), 0),
        ((4, 3, 5, 6), 1),
        ((2, 5, 6, 3), 3),
        ((3, 2000), 1),
        ((1, 8), 1),
        ((8, 1), 1),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_channels_against_numpy(shape: tuple[int, ...], axis: int, dtype: type) -> None:
    x = (RNG.standard_normal(shape) * 2 + 1).astype(dtype)
    x.flat[:: max(1, x.size // 5)] = np.nan
    cm = ChannelMoments(shape[axis])
    cm.update(x, channel_axis=axis)
    assert_channels_match(cm, x, axis)


def test_channels_permuted_torch_bfloat16() -> None:
    t = torch.randn(4, 6, 5, 3, generator=TORCH_RNG).to(torch.bfloat16)
    nhwc = t.permute(0, 2, 3, 1)  # a channels-last view of an NCHW tensor, not contiguous
    cm = ChannelMoments(6)
    cm.update(nhwc, channel_axis=-1)
    assert_channels_match(cm, nhwc.double().numpy(), 3)
    direct = ChannelMoments(6)
    direct.update(t, channel_axis=1)
    np.testing.assert_allclose(direct.mean, cm.mean, rtol=1e-13, atol=1e-15)


def test_channels_empty_and_all_nan_channel() -> None:
    cm = ChannelMoments(3)
    cm.update(np.zeros((0, 3)))
    assert cm.count.tolist() == [0, 0, 0]
    x = np.array([[1.0, np.nan, np.inf], [2.0, np.nan, 3.0]])
    cm.update(x)
    assert cm.count.tolist() == [2, 0, 1]
    assert cm.nonfinite.tolist() == [0, 2, 1]
    assert np.isnan(cm.mean[1])
    assert np.isnan(cm.min[1])
    assert np.isnan(cm.sample_variance[2])
    assert cm.sum[1] == 0.0


def test_channel_errors() -> None:
    with pytest.raises(ValueError, match="channels must be a positive integer, got 0"):
        ChannelMoments(0)
    with pytest.raises(TypeError, match="channels must be an integer"):
        ChannelMoments(2.0)  # type: ignore[arg-type]
    cm = ChannelMoments(4)
    with pytest.raises(ValueError, match="has length 3, expected 4"):
        cm.update(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="out of range"):
        cm.update(np.zeros((5, 4)), channel_axis=2)
    with pytest.raises(ValueError, match="out of range"):
        cm.update(np.array(1.0))
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        cm.update(np.zeros((5, 4)), channel_axis=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot merge 3 channels into 4"):
        cm.merge(ChannelMoments(3))


# --- merge laws (hypothesis) -------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
value = st.one_of(finite, finite, finite, st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-310]))
samples = st.lists(value, max_size=300).map(np.array)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(samples, samples)
def test_merge_equals_concatenation(a: np.ndarray, b: np.ndarray) -> None:
    ma, mb = moments_of(a.astype(np.float64)), moments_of(b.astype(np.float64))
    ma.merge(mb)
    assert_matches(ma, np.concatenate([a, b]).astype(np.float64))


@FAST
@given(samples)
def test_merge_with_empty_is_identity(a: np.ndarray) -> None:
    m = moments_of(a.astype(np.float64))
    before = m.serialize()
    m.merge(Moments())
    assert m.serialize() == before
    empty = Moments()
    empty.merge(m)
    assert empty.serialize() == before


@FAST
@given(st.integers(1, 5), st.integers(0, 40), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_channel_merge_equals_concatenation(channels: int, na: int, nb: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((na, channels)), rng.standard_normal((nb, channels)) * 5 - 2
    ca, cb, whole = ChannelMoments(channels), ChannelMoments(channels), ChannelMoments(channels)
    ca.update(a)
    cb.update(b)
    ca.merge(cb)
    whole.update(np.concatenate([a, b]))
    np.testing.assert_array_equal(ca.count, whole.count)
    np.testing.assert_allclose(ca.mean, whole.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ca.variance, whole.variance, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(ca.min, whole.min)


# --- bytes ----------------------------------------------------------------------------------------


def filled_moments() -> Moments:
    m = moments_of(np.r_[RNG.standard_normal(100), np.nan, np.inf])
    return m


def filled_channels() -> ChannelMoments:
    cm = ChannelMoments(3)
    cm.update(np.r_[RNG.standard_normal((10, 3)), [[np.nan, 1.0, 2.0]]])
    return cm


def test_round_trip_is_exact() -> None:
    for state in (filled_moments(), Moments(), filled_channels(), ChannelMoments(5)):
        data = state.serialize()
        back = type(state).deserialize(data)
        assert back.serialize() == data
        np.testing.assert_array_equal(back.mean, state.mean)
        np.testing.assert_array_equal(back.variance, state.variance)
        assert pickle.loads(pickle.dumps(state)).serialize() == data
        assert type(state).__name__ in repr(back)


def test_deserialize_rejects_other_types_and_non_bytes() -> None:
    with pytest.raises(ValueError, match="not a Moments"):
        Moments.deserialize(filled_channels().serialize())
    with pytest.raises(ValueError, match="not a ChannelMoments"):
        ChannelMoments.deserialize(Histogram.linear(0, 1, 2).serialize())
    with pytest.raises(TypeError, match="expected bytes"):
        Moments.deserialize("LSCP")  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [filled_moments, filled_channels])
def test_every_truncation_is_value_error(make: object) -> None:
    state = make()
    data = state.serialize()
    for n in range(len(data)):
        with pytest.raises(ValueError, match="layerscope"):
            type(state).deserialize(data[:n])
    with pytest.raises(ValueError, match="trailing"):
        type(state).deserialize(data + b"\0")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_bytes_never_crash(data: st.DataObject) -> None:
    state = data.draw(st.sampled_from([filled_moments(), filled_channels()]))
    raw = bytearray(state.serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        back = type(state).deserialize(bytes(raw))
    except ValueError:
        return
    back.merge(type(state).deserialize(bytes(raw)))  # whatever is accepted stays usable
    repr(back)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([Moments, ChannelMoments]))
def test_random_garbage_is_value_error(garbage: bytes, kind: type) -> None:
    with pytest.raises(ValueError, match="layerscope"):
        kind.deserialize(garbage)


@pytest.mark.parametrize("position", range(6))
def test_flipped_header_byte_is_value_error(position: int) -> None:
    raw = bytearray(filled_moments().serialize())
    raw[position] ^= 0x40
    with pytest.raises(ValueError, match="layerscope"):
        Moments.deserialize(bytes(raw))
