"""Checkpoint and resume: a resumed run continues its curves without a gap or a reset."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.history import RecordHistory
from layerscope.records import Record
from models import batches, mlp, steps


def _lenses():
    return [lenses.Loss(), lenses.GradientNorms(of=("weight",)), lenses.DeadUnits(window=8)]


def _scalars(records, first_step):
    return {
        (r.step, r.site, r.quantity, r.statistic): r.value for r in records if r.step >= first_step
    }


def test_resumed_run_equals_uninterrupted_run():
    data = batches("mlp", 20)
    torch.manual_seed(0)
    model = mlp(bias_init=-1.0)
    start = copy.deepcopy(model.state_dict())

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_lenses()) as whole:
        steps(model, opt, whole, data)

    model = mlp()
    model.load_state_dict(start)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_lenses()) as first:
        steps(model, opt, first, data[:10])
        checkpoint = copy.deepcopy(
            {"model": model.state_dict(), "opt": opt.state_dict(), "scope": first.state_dict()}
        )

    resumed_model = mlp()
    resumed_model.load_state_dict(checkpoint["model"])
    resumed_opt = torch.optim.SGD(resumed_model.parameters(), lr=0.05)
    resumed_opt.load_state_dict(checkpoint["opt"])
    with layerscope.watch(resumed_model, optimizer=resumed_opt, lenses=_lenses()) as second:
        second.load_state_dict(checkpoint["scope"])
        steps(resumed_model, resumed_opt, second, data[10:])

    assert min(r.step for r in second.records()) == 10  # no reset of the step counter
    expected = _scalars(whole.records(), 10)
    got = _scalars(second.records(), 10)
    assert got.keys() == expected.keys()
    dead = [k for k in got if k[2] == "dead"]
    assert dead
    assert all(k[0] >= 10 for k in dead)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_load_state_dict_checks_the_lenses():
    scope = layerscope.watch(mlp(), lenses=_lenses())
    state = scope.state_dict()
    scope.close()
    other = layerscope.watch(mlp(), lenses=[lenses.Loss()])
    with pytest.raises(ValueError, match="holds 3 lenses"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        other.load_state_dict({"version": 99})
    other.close()


def test_history_stays_bounded_and_covers_the_run():
    history = RecordHistory(limit=1000)
    for step in range(10_000):
        history.extend([Record(step, 0, "t", f"s{i}", "q", "last", 1.0) for i in range(5)])
        assert len(history) <= 1000 + 5
    steps = sorted({r.step for r in history})
    assert steps[0] == 0
    assert steps[-1] == 9_999
    assert history.stride > 1
    assert all(s % history.stride == 0 for s in steps[:-1])


def test_history_never_thins_findings():
    history = RecordHistory(limit=10)
    history.extend([Record(3, 0, "health", "fc1", "finding", "dead_units", 2.0)])
    history.extend(Record(s, 0, "t", "", "q", "last", 0.0) for s in range(100))
    assert any(r.quantity == "finding" for r in history)


def test_scope_history_limit():
    model = mlp()
    with layerscope.watch(model, lenses=[lenses.Loss()], history=10) as scope:
        for _ in range(50):
            model(torch.randn(2, 8)).sum().backward()
            scope.step(loss=1.0)
    assert len(scope.records()) <= 11


def _rejected(scope, state, message):
    before = copy.deepcopy(scope.state_dict())
    with pytest.raises(ValueError, match=message):
        scope.load_state_dict(state)
    assert scope.state_dict() == before  # a refused state changes nothing


def _trained_state(model, chosen):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=chosen) as scope:
        steps(model, opt, scope, batches("mlp", 12))
        return scope.state_dict()


def test_a_state_of_another_model_is_refused():
    state = _trained_state(mlp(), _lenses())
    wider = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3), nn.ReLU(), nn.Linear(3, 3))
    wider.add_module("extra", nn.Linear(3, 3))
    with layerscope.watch(wider, lenses=_lenses()) as other:
        _rejected(other, state, r"another model.*only in this model \['extra'\]")


def test_a_state_of_other_lenses_or_another_order_is_refused():
    state = _trained_state(mlp(), _lenses())
    swapped = [lenses.Loss(), lenses.DeadUnits(window=8), lenses.GradientNorms(of=("weight",))]
    with layerscope.watch(mlp(), lenses=swapped) as other:
        _rejected(other, state, r"lens 1 of the state is GradientNorms.*DeadUnits")


@pytest.mark.parametrize(
    ("junk", "message"),
    [
        ([1, 2], "expected the dict"),
        ({"version": 2, "step": 3, "epoch": 0}, "no 'lenses'"),
        ({"version": 2, "step": "3", "epoch": 0, "lenses": []}, "step must be"),
        ("garbage", "expected the dict"),
    ],
)
def test_junk_is_refused_with_a_value_error(junk, message):
    with layerscope.watch(mlp(), lenses=_lenses()) as scope:
        _rejected(scope, junk, message)


def test_a_lens_state_that_does_not_load_is_refused_and_nothing_changes():
    state = _trained_state(mlp(), _lenses())
    state["lenses"][2]["state"] = {"trackers": {"1:output": b"not a tracker"}}
    with layerscope.watch(mlp(), lenses=_lenses()) as scope:
        _rejected(scope, state, r"lens 2 \(DeadUnits")


def _health_lenses():
    return [
        lenses.Loss(),
        lenses.DeadUnits(window=4),
        layerscope.health.Health(checks=("dead_units",)),
    ]


def _findings(records, first_step):
    return sorted(
        (r.step, r.site, r.statistic, r.value)
        for r in records
        if r.quantity == "finding" and r.step >= first_step
    )


def test_a_resumed_health_lens_does_not_report_its_findings_again():
    data = batches("mlp", 20)
    model = mlp(bias_init=-10.0)  # the first ReLU is dead from the start
    start = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_health_lenses()) as whole:
        steps(model, opt, whole, data)
    assert _findings(whole.records(), 0)  # the planted dead layer is found...
    assert not _findings(whole.records(), 10)  # ...once, before the checkpoint

    model.load_state_dict(start)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_health_lenses()) as first:
        steps(model, opt, first, data[:10])
        checkpoint = torch.save(first.state_dict(), buffer := io.BytesIO())
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain values only
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_health_lenses()) as second:
        second.load_state_dict(state)
        steps(model, opt, second, data[10:])
    assert checkpoint is None
    assert _findings(second.records(), 10) == _findings(whole.records(), 10)
    assert [(f.kind, f.step, f.site) for f in second.findings()] == [
        (f.kind, f.step, f.site) for f in whole.findings()
    ]
