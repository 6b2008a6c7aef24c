"""Histogram against numpy.histogram over the same edges; edges, merge laws, argument checks, bytes.

Bin convention: [lo, hi) for every bin. numpy.histogram closes its last bin, so the oracle moves
values equal to the last edge from numpy's last bin to overflow.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.stats import Histogram, Moments

RNG = np.random.default_rng(7)
TORCH_RNG = torch.Generator().manual_seed(7)


def oracle(values: np.ndarray, edges: np.ndarray) -> dict[str, object]:
    """numpy's counts, under / overflow and NaN count, in the [lo, hi) convention."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    counts, _ = np.histogram(finite, bins=edges)
    at_last_edge = int(np.count_nonzero(finite == edges[-1]))
    counts[-1] -= at_last_edge
    return {
        "counts": counts,
        "underflow": int(np.count_nonzero(x < edges[0])),
        "overflow": int(np.count_nonzero(x >= edges[-1])),
        "nan": int(np.count_nonzero(np.isnan(x))),
    }


def assert_matches(h: Histogram, values: np.ndarray) -> None:
    ref = oracle(values, h.edges)
    np.testing.assert_array_equal(h.counts, ref["counts"])
    assert h.underflow == ref["underflow"]
    assert h.overflow == ref["overflow"]
    assert h.nan == ref["nan"]
    assert h.total == np.asarray(values).size


def edge_probes(edges: np.ndarray) -> np.ndarray:
    """Every edge and its two floating-point neighbours: where arithmetic lookups slip."""
    return np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])


HISTOGRAMS = {
    "linear": lambda: Histogram.linear(-3.0, 5.0, 16),
    "linear_odd": lambda: Histogram.linear(0.1, 0.7, 7),
    "linear_one_bin": lambda: Histogram.linear(-1.0, 1.0, 1),
    "symlog": lambda: Histogram.symlog(1e-6, 1e2, 5),
    "symlog_ragged": lambda: Histogram.symlog(0.3, 7.0, 3),
    "symlog_wide": lambda: Histogram.symlog(1e-300, 1e300, 4),
    # Bins narrower than the error of the approximate log10 that guesses a bin.
    "symlog_fine": lambda: Histogram.symlog(1e-3, 1e3, 2000),
    "explicit": lambda: Histogram([-10.0, -1.0, -0.5, 0.0, 0.25, 3.0, 1e3]),
}


@pytest.mark.parametrize("name", sorted(HISTOGRAMS))
def test_random_and_edge_values_match_numpy(name: str) -> None:
    h = HISTOGRAMS[name]()
    span = np.max(np.abs(h.edges))
    x = np.concatenate(
        [
            RNG.uniform(-1.2, 1.2, 20_000) * span,
            np.sign(RNG.standard_normal(5000)) * 10.0 ** RNG.uniform(-310, 308, 5000),
            edge_probes(h.edges),
            [np.nan, np.inf, -np.inf, 0.0, -0.0],
        ]
    )
    h.update(x)
    assert_matches(h, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_dtypes(dtype: type) -> None:
    x = (RNG.standard_normal(5000) * 4).astype(dtype)
    h = Histogram.linear(-8, 8, 32)
    h.update(x)
    assert_matches(h, x)


def test_bfloat16_tensor_and_non_contiguous_views() -> None:
    t = torch.randn(40, 30, generator=TORCH_RNG).to(torch.bfloat16)
    h = Histogram.symlog(1e-2, 10.0, 4)
    h.update(t.T[::2])
    assert_matches(h, t.T[::2].double().numpy())
    a = RNG.standard_normal((50, 21))
    for view in (a.T, a[::-3, 1::4], np.broadcast_to(a[0], (4, 21))):
        g = Histogram.linear(-2, 2, 10)
        g.update(view)
        assert_matches(g, np.array(view))


HOSTILE = {
    "all_nan": np.full(30, np.nan),
    "mixed_inf": np.array([np.inf, -np.inf, np.inf, 0.5, np.nan]),
    "huge_float32": np.array([3e38, -3e38, 1e38, 1.0], dtype=np.float32),
    "subnormals": np.array([5e-324, -5e-324, 1e-310, -1e-310, 0.0]),
    "constant": np.full(1000, 0.25),
    "one": np.array([1.0]),
    "zero_elements": np.zeros((0, 3)),
    "zero_d": np.array(-0.5),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("make", ["linear", "symlog_wide", "explicit"])
def test_hostile_input(name: str, make: str) -> None:
    h = HISTOGRAMS[make]()
    h.update(HOSTILE[name])
    assert_matches(h, HOSTILE[name])


def test_bin_convention_and_scalars() -> None:
    h = Histogram.linear(0.0, 1.0, 2)
    for x in (0.0, 0.5, 1.0, -1e-300, 1, float("nan")):
        h.update(x)
    assert h.counts.tolist() == [1, 1]  # 0.0 -> bin 0, 0.5 -> bin 1
    assert (h.underflow, h.overflow, h.nan) == (1, 2, 1)  # 1.0 and 1 are overflow


def test_linear_edges() -> None:
    h = Histogram.linear(-1, 3, 8)
    assert h.kind == "linear"
    assert h.bins == 8
    assert h.edges[0] == -1.0
    assert h.edges[-1] == 3.0
    np.testing.assert_allclose(h.edges, np.linspace(-1, 3, 9), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("linear_width", "max_abs", "per_decade"), [(1e-3, 10.0, 1), (1e-8, 1.0, 4), (0.5, 123.0, 3)]
)
def test_symlog_edges(linear_width: float, max_abs: float, per_decade: int) -> None:
    h = Histogram.symlog(linear_width, max_abs, per_decade)
    e = h.edges
    middle = len(e) // 2
    assert h.kind == "symlog"
    assert len(e) % 2 == 1
    assert e[middle] == 0.0
    assert e[middle + 1] == linear_width
    assert e[-1] == max_abs
    np.testing.assert_array_equal(e, -e[::-1])
    positive = e[middle + 1 :]
    k = np.arange(len(positive) - 1)
    np.testing.assert_allclose(positive[:-1], linear_width * 10.0 ** (k / per_decade), rtol=1e-13)
    assert positive[-2] < max_abs <= linear_width * 10.0 ** ((len(positive) - 1) / per_decade)


def test_explicit_edges_from_list_and_tensor() -> None:
    assert Histogram([0, 1, 3]).edges.tolist() == [0.0, 1.0, 3.0]
    assert Histogram(torch.tensor([0.0, 2.0])).kind == "explicit"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Histogram.linear(1, 1, 3), "low and high must be finite with low < high"),
        (lambda: Histogram.linear(0, np.inf, 3), "low and high must be finite"),
        (lambda: Histogram.linear(np.nan, 1, 3), "low and high must be finite"),
        (lambda: Histogram.linear(-1e308, 1e308, 3), r"high - low finite"),
        (lambda: Histogram.linear(0, 1, 0), r"bins must be in \[1, 1000000\], got 0"),
        (lambda: Histogram.linear(0, 1, 10**7), r"bins must be in \[1, 1000000\]"),
        (lambda: Histogram.linear(1, 1 + 1e-15, 1000), "too narrow"),
        (lambda: Histogram.symlog(0, 1, 3), "linear_width must be finite and > 0, got 0"),
        (lambda: Histogram.symlog(-1, 1, 3), "linear_width must be finite and > 0"),
        (lambda: Histogram.symlog(1, 1, 3), "max_abs must be finite and > linear_width"),
        (lambda: Histogram.symlog(1, np.inf, 3), "max_abs must be finite"),
        (lambda: Histogram.symlog(1e-3, 1, 0), r"bins_per_decade must be in \[1, 1000000\]"),
        (lambda: Histogram.symlog(1e-300, 1e300, 10**4), "exceed the limit of 1000000"),
        (lambda: Histogram([1.0]), "edges must hold 2 to 1000001 values, got 1"),
        (lambda: Histogram([0, 2, 1]), "strictly increasing"),
        (lambda: Histogram([0, np.nan]), "edges must be finite"),
        (lambda: Histogram([[0, 1]]), "edges must be 1-d"),
    ],
)
def test_argument_errors(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Histogram.linear(0, 1, 2.5), "bins must be an integer, got float"),
        (lambda: Histogram.linear(0, 1, True), "bins must be an integer, got bool"),
        (lambda: Histogram.linear("0", 1, 2), "low must be a real number, got str"),
        (lambda: Histogram.symlog(1e-3, 1, 2.0), "bins_per_decade must be an integer"),
        (lambda: Histogram.linear(0, 1, 2).merge(Moments()), "expected a Histogram"),
        (lambda: Histogram.linear(0, 1, 2).update(np.arange(3)), "floating-point"),
        (lambda: Histogram.deserialize(3), "expected bytes"),
    ],
)
def test_type_errors(make: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_merge_requires_identical_edges() -> None:
    a = Histogram.linear(0, 1, 4)
    a.update(np.array([0.1, 0.6]))
    a.merge(Histogram([0, 0.25, 0.5, 0.75, 1]))  # the same edges, made explicitly
    with pytest.raises(ValueError, match="different edges"):
        a.merge(Histogram.linear(0, 1, 5))
    with pytest.raises(ValueError, match="different edges"):
        a.merge(Histogram.linear(0, 1.0000001, 4))
    assert a.total == 2


# --- merge laws (hypothesis) -------------------------------------------------------------------

value = st.one_of(
    st.floats(-20, 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-3, -1e-3, 10.0, -10.0, 5.0]),
)
samples = st.lists(value, max_size=200).map(lambda v: np.array(v, dtype=np.float64))
kinds = st.sampled_from(["linear", "symlog", "explicit"])
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(kind: str) -> Histogram:
    return {
        "linear": lambda: Histogram.linear(-10, 5, 30),
        "symlog": lambda: Histogram.symlog(1e-3, 10, 3),
        "explicit": lambda: Histogram([-4, -1e-3, 0, 2, 2.5, 9]),
    }[kind]()


@FAST
@given(kinds, samples, samples)
def test_merge_equals_concatenation_exactly(kind: str, a: np.ndarray, b: np.ndarray) -> None:
    ha, hb, whole = make(kind), make(kind), make(kind)
    ha.update(a)
    hb.update(b)
    ha.merge(hb)
    whole.update(np.concatenate([a, b]))
    assert ha.serialize() == whole.serialize()
    assert_matches(whole, np.concatenate([a, b]))


@FAST
@given(kinds, samples)
def test_merge_with_empty_is_identity(kind: str, a: np.ndarray) -> None:
    h = make(kind)
    h.update(a)
    before = h.serialize()
    h.merge(make(kind))
    assert h.serialize() == before
    empty = make(kind)
    empty.merge(h)
    assert empty.serialize() == before


# --- bytes ----------------------------------------------------------------------------------------


def filled(kind: str) -> Histogram:
    h = make(kind)
    h.update(np.r_[RNG.standard_normal(500) * 5, np.nan, np.inf, -np.inf])
    return h


@pytest.mark.parametrize("kind", ["linear", "symlog", "explicit"])
def test_round_trip_is_exact(kind: str) -> None:
    h = filled(kind)
    data = h.serialize()
    back = Histogram.deserialize(data)
    assert back.serialize() == data
    assert back.kind == kind
    np.testing.assert_array_equal(back.edges, h.edges)
    np.testing.assert_array_equal(back.counts, h.counts)
    assert pickle.loads(pickle.dumps(h)).serialize() == data
    assert f"kind={kind!r}" in repr(back)
    back.merge(h)  # a deserialized histogram merges with its origin
    assert back.total == 2 * h.total


@pytest.mark.parametrize("kind", ["linear", "symlog", "explicit"])
def test_every_truncation_and_header_flip_is_value_error(kind: str) -> None:
    data = filled(kind).serialize()
    for n in range(len(data)):
        with pytest.raises(ValueError, match="layerscope"):
            Histogram.deserialize(data[:n])
    for position in range(6):
        raw = bytearray(data)
        raw[position] ^= 0x21
        with pytest.raises(ValueError, match="layerscope"):
            Histogram.deserialize(bytes(raw))
    with pytest.raises(ValueError, match="not a Histogram"):
        Histogram.deserialize(Moments().serialize())


@settings(max_examples=300, deadline=None)
@given(kinds, st.data())
def test_corrupted_bytes_never_crash(kind: str, data: st.DataObject) -> None:
    raw = bytearray(filled(kind).serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        back = Histogram.deserialize(bytes(raw))
    except ValueError:
        return
    x = np.r_[back.edges, RNG.standard_normal(50)]
    before = back.counts
    back.update(x)  # whatever is accepted still bins by its edges
    np.testing.assert_array_equal(back.counts - before, oracle(x, back.edges)["counts"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_garbage_is_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError, match="layerscope"):
        Histogram.deserialize(garbage)
