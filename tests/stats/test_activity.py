"""ActivityTracker against a brute-force reference: observed step -> set of active units."""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerscope.stats import ActivityTracker
from layerscope.stats import activity as activity_module


@dataclass
class Reference:
    units: int
    window: int
    steps: dict[int, set[int]] = field(default_factory=dict)

    def update(self, step: int, active: np.ndarray) -> None:
        self.steps.setdefault(step, set()).update(np.flatnonzero(active).tolist())

    def window_sets(self) -> list[set[int]]:
        return [self.steps[s] for s in sorted(self.steps)[-self.window :]]

    def active_steps(self) -> list[int]:
        sets = self.window_sets()
        return [sum(u in s for s in sets) for u in range(self.units)]

    def last_active(self) -> list[int]:
        return [
            max((s for s, a in self.steps.items() if u in a), default=-1) for u in range(self.units)
        ]

    def dead(self) -> list[bool]:
        full = len(self.steps) >= self.window
        return [full and n == 0 for n in self.active_steps()]


def assert_matches(tracker: ActivityTracker, ref: Reference, *, exact_count: bool = True) -> None:
    if exact_count:
        assert tracker.steps_observed() == len(ref.steps)
    else:  # a lower bound that still says whether a full window was seen
        assert min(ref.window, len(ref.steps)) <= tracker.steps_observed() <= len(ref.steps)
    assert tracker.last_step() == max(ref.steps, default=-1)
    assert tracker.active_steps().tolist() == ref.active_steps()
    assert tracker.last_active().tolist() == ref.last_active()
    dead = tracker.dead()
    assert dead.dtype == np.bool_
    assert dead.tolist() == ref.dead()
    assert tracker.dead_count() == sum(ref.dead())
    assert tracker.dead_fraction() == pytest.approx(sum(ref.dead()) / ref.units)


def fresh(units: int, window: int) -> tuple[ActivityTracker, Reference]:
    return ActivityTracker(units, window), Reference(units, window)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 25) -> tuple:
    """(units, window, [(step, per-unit counts)]) with steps non-decreasing (repeats allowed)."""
    units = draw(st.integers(1, 70))
    window = draw(st.integers(1, 8))
    n = draw(st.integers(0, max_steps))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = draw(st.sampled_from([0.0, 0.02, 0.1, 0.5]))
    steps = np.cumsum(rng.integers(0, 3, size=n))
    counts = (rng.random((n, units)) < p) * rng.integers(1, 4, size=(n, units))
    return units, window, [(int(s), c) for s, c in zip(steps, counts, strict=True)]


def fed(units: int, window: int, history: list[tuple[int, np.ndarray]]) -> ActivityTracker:
    tracker = ActivityTracker(units, window)
    for step, counts in history:
        tracker.update(step, counts)
    return tracker


@settings(max_examples=60, deadline=None)
@given(histories())
def test_matches_reference_after_every_update(case: tuple) -> None:
    units, window, history = case
    tracker, ref = fresh(units, window)
    assert_matches(tracker, ref)
    for step, counts in history:
        tracker.update(step, counts)
        ref.update(step, counts)
        assert_matches(tracker, ref)


@pytest.mark.parametrize("window", [1, 2, 7])
def test_never_active_unit_is_dead_after_window_steps_and_not_before(window: int) -> None:
    tracker = ActivityTracker(2, window)
    for i in range(window):
        assert not tracker.dead()[1]
        tracker.update(5 * i, np.array([1, 0]))  # steps need not be consecutive
    assert tracker.dead().tolist() == [False, True]
    assert tracker.last_active().tolist() == [5 * (window - 1), -1]


@pytest.mark.parametrize("window", [1, 3, 6])
def test_unit_active_once_is_dead_again_exactly_window_steps_later(window: int) -> None:
    tracker = ActivityTracker(1, window)
    for step in range(window):
        tracker.update(step, np.array([0]))
    assert tracker.dead_count() == 1
    s = window
    tracker.update(s, np.array([2]))
    for later in range(1, window):
        tracker.update(s + later, np.array([0]))
        assert tracker.dead_count() == 0
    tracker.update(s + window, np.array([0]))
    assert tracker.dead_count() == 1
    assert tracker.last_active().tolist() == [s]


def test_same_step_twice_ors() -> None:
    tracker = ActivityTracker(3, 2)
    tracker.update(4, np.array([1, 0, 0]))
    tracker.update(4, np.array([False, True, False]))
    assert tracker.steps_observed() == 1
    assert tracker.active_steps().tolist() == [1, 1, 0]


@settings(max_examples=40, deadline=None)
@given(histories(), st.integers(0, 2**32 - 1))
def test_merge_of_trackers_that_saw_the_same_steps_equals_one_that_saw_the_or(
    case: tuple, seed: int
) -> None:
    units, window, history = case
    rng = np.random.default_rng(seed)
    other = [(s, (rng.random(units) < 0.1).astype(np.int64)) for s, _ in history]
    a, b = fed(units, window, history), fed(units, window, other)
    both = fed(units, window, [(s, x | y) for (s, x), (_, y) in zip(history, other, strict=True)])
    a.merge(b)
    assert a.serialize() == both.serialize()


@settings(max_examples=40, deadline=None)
@given(histories(), st.booleans())
def test_merge_with_disjoint_steps_equals_one_tracker_that_saw_the_union(
    case: tuple, interleaved: bool
) -> None:
    units, window, history = case
    history = [(2 * i, c) for i, (_, c) in enumerate(history)]  # distinct steps
    if interleaved:  # even / odd positions
        first, second = history[0::2], history[1::2]
    else:  # a run resumed from a checkpoint
        cut = len(history) // 2
        first, second = history[:cut], history[cut:]
    union = fed(units, window, history)
    a, b = fed(units, window, first), fed(units, window, second)
    ab, ba = fed(units, window, first), fed(units, window, second)
    ab.merge(b)
    ba.merge(a)
    assert ab.serialize() == ba.serialize()
    if interleaved and max(len(first), len(second)) > window:
        # The dropped steps are not known any more: only the count is a lower bound.
        ref = Reference(units, window)
        for step, counts in history:
            ref.update(step, counts)
        assert_matches(ab, ref, exact_count=False)
    else:
        assert ab.serialize() == union.serialize()


@settings(max_examples=60, deadline=None)
@given(histories(), st.integers(0, 2**32 - 1))
def test_merge_of_any_split_is_exact_on_the_window(case: tuple, seed: int) -> None:
    units, window, history = case
    rng = np.random.default_rng(seed)
    a, b = ActivityTracker(units, window), ActivityTracker(units, window)
    ref = Reference(units, window)
    for step, counts in history:  # each step goes to a, to b, or to both (half each)
        who = rng.integers(0, 3)
        if who == 2:
            mask = rng.random(units) < 0.5
            a.update(step, counts * mask)
            b.update(step, counts * ~mask)
        else:
            (a, b)[who].update(step, counts)
        ref.update(step, counts)
    a.merge(b)
    assert_matches(a, ref, exact_count=False)
    roundtrip = ActivityTracker.deserialize(a.serialize())
    assert roundtrip.serialize() == a.serialize()
    assert_matches(roundtrip, ref, exact_count=False)


def test_merge_with_itself_or_empty_changes_nothing() -> None:
    tracker = fed(4, 2, [(0, np.array([1, 0, 0, 0])), (3, np.array([0, 1, 0, 0]))])
    before = tracker.serialize()
    tracker.merge(tracker)
    tracker.merge(ActivityTracker(4, 2))
    assert tracker.serialize() == before
    empty = ActivityTracker(4, 2)
    empty.merge(tracker)
    assert empty.serialize() == before


def test_merge_rejects_other_shapes_and_types() -> None:
    tracker = ActivityTracker(4, 2)
    with pytest.raises(ValueError, match="units 4 vs 5"):
        tracker.merge(ActivityTracker(5, 2))
    with pytest.raises(ValueError, match="window 2 vs 3"):
        tracker.merge(ActivityTracker(4, 3))
    with pytest.raises(TypeError, match="expected an ActivityTracker"):
        tracker.merge(object())  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(histories())
def test_serialize_round_trip(case: tuple) -> None:
    units, window, history = case
    tracker = fed(units, window, history)
    back = ActivityTracker.deserialize(tracker.serialize())
    assert back.serialize() == tracker.serialize()
    for name in ("active_steps", "last_active", "dead"):
        assert getattr(back, name)().tolist() == getattr(tracker, name)().tolist()
    step = tracker.last_step() + 1
    back.update(step, np.ones(units, np.int64))  # keeps working after the round trip
    tracker.update(step, np.ones(units, np.int64))
    assert back.serialize() == tracker.serialize()


def test_corrupted_bytes_raise_value_error() -> None:
    rng = np.random.default_rng(1)
    tracker = fed(70, 3, [(s, rng.integers(0, 2, 70)) for s in range(5)])
    data = tracker.serialize()
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="truncated|not a serialized"):
            ActivityTracker.deserialize(data[:cut])
    with pytest.raises(ValueError, match="trailing"):
        ActivityTracker.deserialize(data + b"\0")
    with pytest.raises(ValueError, match="hold a Moments, not a ActivityTracker"):
        ActivityTracker.deserialize(data[:4] + b"\x01" + data[5:])
    for i in range(6, len(data)):  # any flipped bit is refused or gives a usable state
        bad = bytearray(data)
        bad[i] ^= 0x40
        try:
            ActivityTracker.deserialize(bytes(bad)).dead()
        except ValueError:
            pass
    # a step list that goes backwards: the steps of slot 0 and 1 swapped
    head = 6 + 4 * 8 + 8
    swapped = data[:head] + data[head + 8 : head + 16] + data[head : head + 8] + data[head + 16 :]
    with pytest.raises(ValueError, match="steps not increasing"):
        ActivityTracker.deserialize(swapped)


@pytest.mark.parametrize(
    "active",
    [
        np.array([1, 0, 2]),
        np.array([1, 0, 2], np.int32),
        np.array([1, 0, 2], np.uint8),
        np.array([True, False, True]),
        np.array([1, 0, 2], np.int16),
        torch.tensor([1, 0, 2]),
        torch.tensor([True, False, True]),
        torch.tensor([1, 0, 2], dtype=torch.int32),
        np.array([1, 9, 0, 9, 2])[::2],
        torch.tensor([2, 0, 1]).flip(0),
        [1, 0, 2],
        (True, False, True),
    ],
)
def test_accepts_integer_and_bool_arrays_in_place(active: object) -> None:
    tracker = ActivityTracker(3, 1)
    tracker.update(0, active)
    assert tracker.active_steps().tolist() == [1, 0, 1]


def test_accepts_a_summary_like_object_with_channel_active() -> None:
    class Summary:
        channel_active = np.array([0, 5, 0], np.int64)

    tracker = ActivityTracker(3, 1)
    tracker.update(0, Summary())
    assert tracker.dead().tolist() == [True, False, True]


@pytest.mark.parametrize(
    "active",
    [
        np.zeros(3),
        np.zeros(3, np.float32),
        torch.zeros(3, dtype=torch.bfloat16),
        np.zeros(3, np.complex64),
    ],
)
def test_rejects_non_integer_dtypes_with_type_error(active: object) -> None:
    with pytest.raises(TypeError, match=r"\(int8, int16, int32, int64, uint8.*or bool\), got"):
        ActivityTracker(3, 1).update(0, active)


def test_rejects_wrong_lengths_and_shapes_with_value_error() -> None:
    tracker = ActivityTracker(3, 1)
    with pytest.raises(ValueError, match="got 4 values for 3 units"):
        tracker.update(0, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="1-d array"):
        tracker.update(0, np.zeros((3, 1), np.int64))
    assert tracker.steps_observed() == 0


def test_steps_going_backwards_or_negative_raise_value_error() -> None:
    tracker = ActivityTracker(2, 3)
    tracker.update(10, np.array([1, 0]))
    with pytest.raises(ValueError, match="must not go backwards, got 9 after 10"):
        tracker.update(9, np.array([0, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        ActivityTracker(2, 3).update(-1, np.array([0, 1]))
    assert tracker.last_active().tolist() == [10, -1]  # the failed update changed nothing


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="units must be positive, got 0"):
        ActivityTracker(0)
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        ActivityTracker(3, 0)
    with pytest.raises(TypeError, match="window must be an integer"):
        ActivityTracker(3, 2.5)  # type: ignore[arg-type]
    tracker = ActivityTracker(np.int64(3))
    assert (tracker.units, tracker.window) == (3, 100)
    assert repr(tracker) == "ActivityTracker(units=3, window=100, steps_observed=0, dead=0)"


def test_docstring_example_runs() -> None:
    assert doctest.testmod(activity_module, raise_on_error=True).attempted > 0
