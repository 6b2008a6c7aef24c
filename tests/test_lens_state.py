"""Declared lens state: checkpoints and merges follow from ``add_state``, and nothing else is kept.

The merge is checked against one instance that saw both streams (two pieces of a run, or two
ranks' halves of each batch) and against numpy's reading of the same activity.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses, stats
from layerscope.health import Health
from layerscope.lenses.state import MERGES, Stateful
from models import batches, mlp

WINDOW = 4


def _relu_activity(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Per ReLU, which units were positive for some sample of `x` (numpy's reading)."""
    seen: list[np.ndarray] = []
    hooks = [
        m.register_forward_hook(lambda m, i, out: seen.append((out > 0).any(0).numpy()))
        for m in model
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def _watch(model, xs, state=None):
    """DeadUnits on the ReLUs over the batches `xs`; the lens afterwards."""
    with layerscope.watch(
        model, lenses=[lenses.DeadUnits(modules=nn.ReLU, window=WINDOW)]
    ) as scope:
        if state is not None:
            scope.load_state_dict(state)
        for x in xs:
            model(x).sum().backward()
            scope.step()
        return scope.lenses[0], scope.state_dict()


def _observed(lens) -> dict[str, tuple]:
    return {
        site: (
            t.steps_observed(),
            t.last_step(),
            t.dead().tolist(),
            t.active_steps().tolist(),
            t.last_active().tolist(),
        )
        for site, t in lens.trackers.items()
    }


def _numpy_reading(activity: list[list[np.ndarray]], first_step: int = 0) -> dict[str, tuple]:
    """What a tracker that saw `activity` (steps x ReLUs x units) holds, by numpy."""
    out = {}
    for r, site in enumerate(("1:output", "3:output")):
        a = np.array([step[r] for step in activity])
        steps = np.arange(first_step, first_step + len(a))
        recent = a[-WINDOW:]
        last = [int(steps[np.flatnonzero(col)[-1]]) if col.any() else -1 for col in a.T]
        dead = (~recent.any(0) if len(a) >= WINDOW else np.zeros(a.shape[1], bool)).tolist()
        out[site] = (len(a), int(steps[-1]), dead, recent.sum(0).tolist(), last)
    return out


def test_dead_units_of_two_pieces_of_a_run_merge_into_the_whole_run():
    data = [x for x, _ in batches("mlp", 12)]
    model = mlp(bias_init=-1.0)
    reference = [_relu_activity(model, x) for x in data]
    whole, _ = _watch(model, data)
    first, state = _watch(mlp(bias_init=-1.0), data[:6])
    state["lenses"][0]["state"] = {}  # the second piece starts at step 6 with nothing seen
    second, _ = _watch(mlp(bias_init=-1.0), data[6:], state)
    assert _observed(second) == _numpy_reading(reference[6:], first_step=6)

    merged = lenses.DeadUnits(modules=nn.ReLU, window=WINDOW)
    merged.load_state_dict(first.state_dict())
    merged.merge_state(second)
    assert _observed(merged) == _observed(whole) == _numpy_reading(reference)
    assert any(any(dead) for _, _, dead, _, _ in _observed(whole).values())  # not vacuous
    assert _observed(second) == _numpy_reading(reference[6:], first_step=6)  # left as it was


def test_dead_units_of_two_ranks_halves_merge_into_one_that_saw_each_whole_batch():
    data = [x for x, _ in batches("mlp", 8, batch=32)]
    model = mlp(bias_init=-1.0)
    reference = [_relu_activity(model, x) for x in data]
    whole, _ = _watch(model, data)
    rank0, _ = _watch(mlp(bias_init=-1.0), [x[:16] for x in data])
    rank1, _ = _watch(mlp(bias_init=-1.0), [x[16:] for x in data])
    assert _observed(rank0) != _observed(whole)  # each half alone sees fewer active units
    rank0.merge_state(rank1.state_dict())  # what ranks would exchange: plain state dicts
    assert _observed(rank0) == _observed(whole) == _numpy_reading(reference)


def test_a_declared_state_round_trips_through_a_weights_only_checkpoint():
    data = [x for x, _ in batches("mlp", 6)]
    lens, _ = _watch(mlp(bias_init=-1.0), data)
    buffer = io.BytesIO()
    torch.save(lens.state_dict(), buffer)
    buffer.seek(0)
    restored = lenses.DeadUnits(modules=nn.ReLU, window=WINDOW)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert _observed(restored) == _observed(lens)
    assert restored.state_dict() == lens.state_dict()

    health = Health()
    health.failed.add("loss")
    again = Health()
    again.load_state_dict(health.state_dict())
    assert again.failed == {"loss"}
    assert set(health.state_dict()) == {"log", "failed", "checks"}


class Remembering(lenses.Loss):
    """A lens that keeps a declared count and an undeclared cache."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("losses_seen", 0, merge="sum")
        self.cache: list[float] = []

    def site_records(self, ctx, w):
        self.losses_seen += 1
        self.cache.append(w.summary.mean)
        return super().site_records(ctx, w)


def test_an_undeclared_attribute_is_not_checkpointed_and_a_stray_state_is_refused():
    model = mlp()
    with layerscope.watch(model, lenses=[Remembering()]) as scope:
        for x, _ in batches("mlp", 3):
            scope.step(loss=model(x).sum())
        state = scope.state_dict()
    lens = scope.lenses[0]
    assert lens.cache
    assert lens.losses_seen == 3
    assert state["lenses"][0]["state"] == {"losses_seen": 3}

    fresh = Remembering()
    fresh.load_state_dict(state["lenses"][0]["state"])
    assert fresh.losses_seen == 3
    assert fresh.cache == []
    with pytest.raises(ValueError, match="unknown state 'cache'; it declares losses_seen"):
        fresh.load_state_dict({"losses_seen": 1, "cache": [1.0]})
    assert fresh.losses_seen == 3  # a refused state changes nothing
    with pytest.raises(ValueError, match="merge_state: unknown state 'cache'"):
        fresh.merge_state({"cache": [1.0]})


def test_a_stateless_lens_declares_nothing():
    assert lenses.Activations().state_dict() == {}
    with pytest.raises(ValueError, match="unknown state 'trackers'; it declares none"):
        lenses.Activations().load_state_dict({"trackers": {}})


class Kept(Stateful):
    def __init__(self, rule: str, default: object, **options: object) -> None:
        self.add_state("value", default, merge=rule, **options)


@pytest.mark.parametrize(
    ("rule", "mine", "theirs", "merged"),
    [
        ("sum", 3, 4, 7),
        ("max", 3.0, 4.0, 4.0),
        ("min", 3.0, 4.0, 3.0),
        ("cat", [1, 2], [3], [1, 2, 3]),
        ("first", "rank 0", "rank 1", "rank 0"),
        ("union", {"a"}, {"b"}, {"a", "b"}),
    ],
)
def test_each_merge_rule(rule, mine, theirs, merged):
    a, b = Kept(rule, type(mine)()), Kept(rule, type(mine)())
    a.value, b.value = mine, theirs
    a.merge_state(b)
    assert a.value == merged
    assert b.value == theirs


def test_extremes_merge_arrays_elementwise():
    a, b = Kept("max", np.zeros(3)), Kept("max", np.zeros(3))
    a.value, b.value = np.array([1.0, 5.0, -2.0]), np.array([3.0, 0.0, -1.0])
    a.merge_state(b)
    np.testing.assert_array_equal(a.value, [3.0, 5.0, -1.0])


def test_moments_merge_count_weighted_per_site_against_numpy():
    """Uneven halves: averaging the two means would be wrong; the declared merge is exact."""
    plain = {"save": stats.Moments.serialize, "load": stats.Moments.deserialize}
    rng = np.random.default_rng(0)
    data = {"fc1": rng.normal(3.0, 2.0, 1000), "fc2": rng.normal(-1.0, 0.5, 10)}
    a, b = Kept("merge", {}, keyed=True, **plain), Kept("merge", {}, keyed=True, **plain)
    for site, values in data.items():
        a.value[site], b.value[site] = stats.Moments(), stats.Moments()
        a.value[site].update(values[:7])
        b.value[site].update(values[7:])
    b.value["fc3"] = stats.Moments()  # a site only the other instance saw
    b.value["fc3"].update(np.ones(4))
    a.merge_state(b)
    for site, values in data.items():
        assert a.value[site].count == len(values)
        assert a.value[site].mean == pytest.approx(values.mean(), rel=1e-12)
        assert a.value[site].variance == pytest.approx(values.var(), rel=1e-9)
    assert a.value["fc3"].count == 4
    assert b.value["fc1"].count == 993  # the other instance is left as it was


def test_a_declaration_is_checked():
    with pytest.raises(ValueError, match="unknown merge 'mean'; choose from sum"):
        Kept("mean", 0.0)
    lens = lenses.DeadUnits()
    with pytest.raises(ValueError, match="state 'trackers' is declared twice"):
        lens.add_state("trackers", {}, merge="merge")
    assert "mean" not in MERGES  # averaging is not a merge
