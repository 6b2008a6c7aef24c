"""Checks declare what they keep: a resumed run judges as the uninterrupted one, pieces merge."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import layerscope
from layerscope import lenses
from layerscope.health import Health, LossCheck
from layerscope.health.base import Series, Stretches
from models import batches, mlp

#: A noisy flat loss, then a spike at step 15: the spike needs the ten losses before it.
LOSSES = [1.0 + 0.01 * np.sin(i) for i in range(15)] + [50.0, 1.0, 1.0]
CUT = 12


def _run(losses, state=None):
    model = mlp()
    x = batches("mlp", 1)[0][0]
    with layerscope.watch(model, lenses=[lenses.Loss(), Health(checks=("loss",))]) as scope:
        if state is not None:
            scope.load_state_dict(state)
        for value in losses:
            model(x).sum().backward()
            scope.step(loss=float(value))
        return [(f.kind, f.step) for f in scope.findings()], scope.state_dict()


def test_a_resumed_run_judges_as_the_uninterrupted_one():
    whole, _ = _run(LOSSES)
    assert ("loss_spike", 15) in whole
    _, state = _run(LOSSES[:CUT])
    resumed, _ = _run(LOSSES[CUT:], copy.deepcopy(state))
    assert resumed == whole  # the loss window came along: the spike at 15 is seen


def test_two_pieces_of_a_loss_check_merge_into_the_whole():
    options = {"window": 6, "min_steps": 4, "plateau_window": 3}
    whole, first, second = LossCheck(**options), LossCheck(**options), LossCheck(**options)
    values = [float(v) for v in np.random.default_rng(0).normal(1.0, 0.1, 20)]
    for check, part in ((whole, values), (first, values[:7]), (second, values[7:])):
        for v in part:
            check.recent.add("", v)
            check.latest.add("", v)
            check.plateau.add(v)
            check.first = v if check.first is None else check.first
    first.merge_state(second)
    assert first.state_dict() == whole.state_dict()
    assert first.plateau.older.median() == np.median(values[-6:-3])
    assert first.plateau.newer.median() == np.median(values[-3:])
    assert first.first == values[0]


def test_series_and_stretches_round_trip_and_merge_in_order():
    a, b = Series(3), Series(3)
    for v in (1.0, 2.0):
        a.add("fc1", v)
    for v in (3.0, 4.0):
        b.add("fc1", v)
    b.add("fc2", 9.0)
    a.merge(b)
    assert a.plain() == {"fc1": [2.0, 3.0, 4.0], "fc2": [9.0]}
    assert Series.from_plain(3, a.plain()).plain() == a.plain()
    s = Stretches.from_values(2, [1.0, 2.0, 3.0])
    s.merge(Stretches.from_values(2, [4.0, 5.0]))
    assert s.values() == [2.0, 3.0, 4.0, 5.0]


def test_a_check_state_names_what_it_keeps_and_nothing_else():
    check = LossCheck()
    assert set(check.state_dict()) == {"recent", "latest", "plateau", "first"}
    with pytest.raises(ValueError, match="LossCheck.load_state_dict: unknown state 'window'"):
        check.load_state_dict({"window": 3})
