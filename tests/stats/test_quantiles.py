import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerscope.stats import ExactQuantiles, QuantileSketch

QS = np.linspace(0.0, 1.0, 41)


def max_rank_error(sketch: QuantileSketch, data: np.ndarray) -> float:
    """Largest |reported rank - true rank| over the percentiles 1..99 and a grid of points."""
    data = np.sort(data[~np.isnan(data)])
    n = data.size
    qs = np.arange(1, 100) / 100
    values = sketch.quantile(qs)
    lo = np.searchsorted(data, values, side="left") / n
    hi = np.searchsorted(data, values, side="right") / n
    # the true rank of a returned value may be anywhere in [lo, hi] when it is tied
    err_q = np.maximum(0.0, np.maximum(lo - qs, qs - hi)).max()
    points = data[:: max(1, n // 500)]
    err_r = np.abs(sketch.rank(points) - np.searchsorted(data, points, side="right") / n).max()
    return float(max(err_q, err_r))


DISTRIBUTIONS = {
    "uniform": lambda rng, n: rng.random(n),
    "normal": lambda rng, n: rng.standard_normal(n).astype(np.float32),
    "cauchy": lambda rng, n: rng.standard_cauchy(n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 3.0, n),
    "sorted": lambda rng, n: np.sort(rng.random(n)),
    "reversed": lambda rng, n: np.sort(rng.random(n))[::-1],
    "few_values": lambda rng, n: rng.integers(0, 5, n).astype(np.float64),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("k", [64, 200])
def test_sketch_rank_error_within_bound(name, k):
    data = DISTRIBUTIONS[name](np.random.default_rng(k), 300_000)
    sketch = QuantileSketch(k=k)
    sketch.update(data)
    assert max_rank_error(sketch, data) < sketch.normalized_rank_error
    assert sketch.count == data.size
    assert sketch.min == data.min()
    assert sketch.max == data.max()


def test_sketch_one_value_at_a_time_within_bound():
    data = np.random.default_rng(1).random(20_000)
    sketch = QuantileSketch(k=32)
    for chunk in np.array_split(data, 2000):
        sketch.update(chunk)
    assert max_rank_error(sketch, data) < QuantileSketch.bound_for_k(32)


@pytest.mark.parametrize("q", [0.0, 0.013, 0.25, 0.5, 0.5001, 0.75, 0.99, 1.0])
def test_exact_equals_numpy_linear(q):
    data = np.random.default_rng(2).standard_normal(10_001)
    e = ExactQuantiles()
    e.update(data)
    assert e.quantile(q) == np.quantile(data, q)
    np.testing.assert_array_equal(e.quantile(QS), np.quantile(data, QS))
    assert e.median() == np.median(data)
    assert e.iqr() == np.subtract(*np.quantile(data, [0.75, 0.25]))


def test_exact_reservoir_past_capacity():
    data = np.random.default_rng(3).random(50_000)
    e = ExactQuantiles(capacity=5_000)
    e.update(data)
    assert not e.exact
    assert e.count == 50_000
    assert e.min == data.min()
    assert e.max == data.max()
    assert abs(e.median() - 0.5) < 0.03
    with pytest.raises(ValueError, match="capacity"):
        ExactQuantiles(capacity=0)


finite = st.floats(-1e6, 1e6, allow_nan=False, width=64)
arrays = hnp.arrays(np.float64, st.integers(0, 400), elements=finite)


@settings(max_examples=40, deadline=None)
@given(a=arrays, b=arrays)
def test_exact_merge_is_concatenation(a, b):
    x, y = ExactQuantiles(), ExactQuantiles()
    x.update(a)
    y.update(b)
    x.merge(y)
    both = np.concatenate([a, b])
    if both.size == 0:
        assert np.isnan(x.median())
        assert x.count == 0
    else:
        np.testing.assert_array_equal(x.quantile(QS), np.quantile(both, QS))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 30_000), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_sketch_merge_within_bound_of_concatenation(sizes, seed):
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal(s) for s in sizes]
    total = QuantileSketch(k=100, seed=seed)
    for i, part in enumerate(parts):
        s = QuantileSketch(k=100, seed=seed + i + 1)
        s.update(part)
        total.merge(s)
    both = np.concatenate(parts)
    assert total.count == both.size
    if both.size:
        assert max_rank_error(total, both) < total.normalized_rank_error


@pytest.mark.parametrize("cls", [QuantileSketch, ExactQuantiles])
def test_adversarial_inputs(cls):
    s = cls()
    assert np.isnan(s.quantile(0.5))
    assert np.isnan(s.rank(0.0))
    assert np.isnan(s.min)
    s.update(np.array([], dtype=np.float32))
    s.update(np.full(10, np.nan))
    assert s.count == 0
    assert s.nan_count == 10
    assert np.isnan(s.median())
    hostile = np.array([np.inf, -np.inf, 1e38, -1e38, 5e-324], dtype=np.float64)
    s.update(hostile)
    assert s.min == -np.inf
    assert s.max == np.inf
    assert s.count == 5
    assert s.quantile(0.5) == 5e-324
    if cls is QuantileSketch:
        assert s.quantile(0.0) == -np.inf
        assert s.quantile(1.0) == np.inf
    else:  # numpy's interpolation next to an infinity gives NaN (inf - inf); so do we
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(s.quantile(QS), np.quantile(hostile, QS))
    one = cls()
    one.update(np.float32(2.5))
    assert one.quantile(0.3) == 2.5
    assert one.median() == 2.5
    assert one.iqr() == 0.0
    const = cls()
    const.update(np.full(100_000, 7.0, dtype=np.float32))
    assert const.quantile(QS).tolist() == [7.0] * QS.size
    assert const.rank(7.0) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        s.quantile(1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        s.quantile(np.nan)
    with pytest.raises(TypeError, match="int64"):
        s.update(np.arange(3))


@pytest.mark.parametrize("cls", [QuantileSketch, ExactQuantiles])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_torch_half_and_strided_views(cls, dtype):
    t = torch.linspace(-3, 3, 4001, dtype=torch.float64).reshape(4001, 1).expand(4001, 3).to(dtype)
    view = t.t()[:, ::2]  # non-contiguous
    s = cls()
    s.update(view.requires_grad_(dtype != torch.float16))
    ref = view.detach().double().numpy()
    assert s.count == ref.size
    assert s.min == ref.min()
    assert s.max == ref.max()
    if cls is ExactQuantiles:
        np.testing.assert_array_equal(s.quantile(QS), np.quantile(ref, QS))
    else:
        assert max_rank_error(s, ref.ravel()) < s.normalized_rank_error


@pytest.mark.parametrize("cls", [QuantileSketch, ExactQuantiles])
def test_serialization_round_trip_and_corruption(cls):
    data = np.random.default_rng(4).standard_normal(100_000)
    s = cls(capacity=50_000) if cls is ExactQuantiles else cls(k=128)
    s.update(data)
    s.update(np.array([np.nan]))
    raw = s.serialize()
    back = cls.deserialize(raw)
    assert back.serialize() == raw
    assert back.nan_count == 1
    np.testing.assert_array_equal(back.quantile(QS), s.quantile(QS))
    again = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(again.quantile(QS), s.quantile(QS))
    back.update(data[:1000])
    s.update(data[:1000])
    assert back.serialize() == s.serialize()  # the generator's state travels too
    for cut in (0, 5, 6, 40, len(raw) - 1):
        with pytest.raises(ValueError, match="truncated|header|corrupted|trailing"):
            cls.deserialize(raw[:cut])
    with pytest.raises(ValueError, match="trailing"):
        cls.deserialize(raw + b"\0")
    with pytest.raises(ValueError, match="not a"):
        cls.deserialize(b"LSCP\x01\x01" + raw[6:])
    other = ExactQuantiles if cls is QuantileSketch else QuantileSketch
    with pytest.raises(ValueError, match="not a"):
        other.deserialize(raw)


def test_sketch_repr_arguments_and_merge_types():
    s = QuantileSketch(k=8, seed=0)
    assert "QuantileSketch(k=8" in repr(s)
    assert "ExactQuantiles(" in repr(ExactQuantiles())
    for bad in (7, 65536, 3.5, True):
        with pytest.raises(ValueError, match="k must"):
            QuantileSketch(k=bad)
    with pytest.raises(ValueError, match="seed"):
        QuantileSketch(seed=-1)
    with pytest.raises(TypeError, match="merge"):
        s.merge(ExactQuantiles())
    a, b = QuantileSketch(k=400), QuantileSketch(k=50)
    a.update(np.random.default_rng(5).random(100_000))
    b.update(np.random.default_rng(6).random(100_000))
    a.merge(b)
    assert a.normalized_rank_error == QuantileSketch.bound_for_k(50)
    assert isinstance(a.quantile(0.5), float)
    assert a.quantile([[0.1, 0.2]]).shape == (1, 2)
