"""The GradientDeath lens: units whose output gradient stays zero over a window, against torch."""

from __future__ import annotations

import functools

import pytest
import torch

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, mlp, train

WINDOW = 3


def test_gradient_death_matches_the_captured_output_gradients():
    model = mlp(bias_init=-10.0)  # the first ReLU never fires: nothing flows back to layer 0
    grads: dict[int, dict[str, torch.Tensor]] = {}
    step = {"i": 0}

    def keep(name: str, i: int, g: torch.Tensor) -> None:
        grads.setdefault(i, {})[name] = g.detach().clone()

    def hook(module, args, out, name):  # returns None: the output stays the module's
        out.register_hook(functools.partial(keep, name, step["i"]))

    for name, module in model.named_children():
        module.register_forward_hook(functools.partial(hook, name=name))

    def advance(i, m):
        step["i"] = i + 1

    _, scope = train(
        model,
        batches("mlp", 5),
        after_backward=advance,
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.GradientDeath(window=WINDOW)]
        ),
    )
    records = scope.records()
    assert {r.tag for r in records} == {"gradient_activity"}
    active = {
        i: {name: (g != 0).reshape(-1, g.shape[-1]).any(0) for name, g in per.items()}
        for i, per in grads.items()
    }
    for r in records:
        module = r.site.removesuffix(":output.grad")
        if r.quantity == "active":
            want = active[r.step][module].double().mean().item()
        else:
            fired = torch.stack([active[s][module] for s in range(r.step - WINDOW + 1, r.step + 1)])
            dead = (~fired.any(0)).sum().item()
            want = dead if r.statistic == "count" else dead / fired.shape[1]
        assert r.value == pytest.approx(want), r
    # a full window first: dead records from step WINDOW - 1 on
    assert sorted({r.step for r in select(records, quantity="dead")}) == [2, 3, 4]
    dead = {r.site: r.value for r in select(records, step=4, quantity="dead", statistic="fraction")}
    assert dead["0:output.grad"] == 1.0
    assert dead["4:output.grad"] == 0.0
