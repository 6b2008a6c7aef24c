"""Merge laws of the vectors gatherers reduce themselves (heads, timesteps), against numpy.

A sequence of items per timestep is split into parts (micro-batches, ranks) of their own lengths
and batch sizes; each part is reduced to rows of (timestep, mean, std, l2) as the recurrent
gatherer does, and the parts merged by :func:`combine_values` under the rows' declared rules must
give numpy's numbers on every item that reached each timestep, whichever way the parts are
grouped.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerscope.gatherers.attention import HEAD_ROWS
from layerscope.gatherers.recurrent import GRAD_ROWS, HIDDEN_ROWS, STATE_ROWS
from layerscope.stats.vectors import L2, LABEL, MEAN, STD, VectorRows, combine_values

Part = list[np.ndarray]  # one array of items per timestep


@st.composite
def parts(draw: st.DrawFn) -> list[Part]:
    """1-5 parts, each of 1-6 timesteps holding 1-4 items of drawn magnitude and offset."""
    found = []
    for _ in range(draw(st.integers(1, 5))):
        length = draw(st.integers(1, 6))
        scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
        offset = draw(st.floats(-10, 10))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        found.append(
            [offset + scale * rng.standard_normal(rng.integers(1, 5)) for _ in range(length)]
        )
    return found


def reduce_part(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """(t, mean, std, l2) per timestep, and the items behind each timestep (the counts)."""
    rows = np.array([[t, x.mean(), x.std(), np.linalg.norm(x)] for t, x in enumerate(part)]).T
    return rows, np.array([float(len(x)) for x in part])


def whole(pieces: list[Part]) -> np.ndarray:
    """numpy's (t, mean, std, l2) of every item that reached each timestep."""
    length = max(len(p) for p in pieces)
    items = [np.concatenate([p[t] for p in pieces if t < len(p)]) for t in range(length)]
    return np.array([[t, x.mean(), x.std(), np.linalg.norm(x)] for t, x in enumerate(items)]).T


@settings(max_examples=200, deadline=None)
@given(parts(), st.data())
def test_parts_merge_into_the_numbers_of_everything_they_saw(pieces, data):
    reduced = [reduce_part(p) for p in pieces]
    merged, counts = combine_values(*zip(*reduced, strict=True), HIDDEN_ROWS)
    want = whole(pieces)
    np.testing.assert_allclose(merged, want, rtol=1e-9, atol=1e-12)
    items = [sum(len(p[t]) for p in pieces if t < len(p)) for t in range(want.shape[1])]
    np.testing.assert_array_equal(counts, np.broadcast_to(items, want.shape))
    # Grouped otherwise (two ranks each merging its micro-batches first): the same numbers.
    cut = data.draw(st.integers(1, len(reduced)))
    left = combine_values(*zip(*reduced[:cut], strict=True), HIDDEN_ROWS)
    grouped = [left]
    if cut < len(reduced):
        grouped.append(combine_values(*zip(*reduced[cut:], strict=True), HIDDEN_ROWS))
    again, total = combine_values(*zip(*grouped, strict=True), HIDDEN_ROWS)
    np.testing.assert_allclose(again, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(total, counts)


def test_a_mean_of_few_items_weighs_less_than_one_of_many():
    short = np.array([[1.0, 10.0]], np.float32)
    long = np.array([[5.0, 20.0, 7.0]], np.float32)
    merged, counts = combine_values([short, long], [1, np.array([3.0, 3.0, 2.0])])
    np.testing.assert_allclose(merged, [[(1 + 15) / 4, (10 + 60) / 4, 7.0]])
    np.testing.assert_array_equal(counts, [[4.0, 4.0, 2.0]])
    assert merged.dtype == np.float32
    again, total = combine_values([merged, short], [counts, 2])
    np.testing.assert_allclose(again, [[(16 + 2) / 6, (70 + 20) / 6, 7.0]])
    np.testing.assert_array_equal(total, [[6.0, 6.0, 2.0]])


def test_a_nan_a_part_holds_stays_in_every_rule():
    rows = VectorRows.of(t=LABEL, mean=MEAN, std=STD, l2=L2)
    clean = np.array([[0.0], [1.0], [0.5], [2.0]])
    for row in range(1, 4):
        broken = clean.copy()
        broken[row, 0] = np.nan
        merged, _ = combine_values([clean, broken], [3, 5], rows)
        assert np.isnan(merged[row, 0]), rows.names[row]
        if row == 3:  # a norm does not feed the other rows
            assert np.isfinite(merged[:3, 0]).all()


def test_a_column_no_part_has_is_nan_and_labels_come_from_the_parts_that_have_it():
    a = np.array([[0.0, 1.0], [2.0, 2.0]])
    merged, counts = combine_values([a, a[:, :1]], [np.array([1.0, 0.0]), 2], GRAD_ROWS)
    assert np.isnan(merged[:, 1]).all()
    assert merged[0, 0] == 0.0
    assert merged[1, 0] == pytest.approx(np.sqrt(8.0))
    np.testing.assert_array_equal(counts, [[3.0, 0.0], [3.0, 0.0]])


def test_the_gatherers_declare_a_rule_for_every_row():
    assert list(HIDDEN_ROWS) == ["t", "mean", "std", "l2"]
    assert dict(zip(STATE_ROWS, STATE_ROWS.merges, strict=True))["reverse"] == LABEL
    assert HEAD_ROWS.merges[HEAD_ROWS.index("output_l2")] == L2
    assert set(HEAD_ROWS.merges[:-1]) == {MEAN}


def test_rows_that_cannot_merge_are_refused_by_name():
    with pytest.raises(ValueError, match="row 'spread' merges by 'median'"):
        VectorRows.of(spread="median")
    with pytest.raises(ValueError, match="'std' row pools about a row named 'mean'"):
        VectorRows.of(std=STD, l2=L2)
    with pytest.raises(ValueError, match=r"4 rows \('t', 'mean', 'std', 'l2'\) but vectors"):
        combine_values([np.zeros((2, 3)), np.zeros((2, 3))], None, HIDDEN_ROWS)
