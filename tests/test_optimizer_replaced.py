"""An optimizer created anew mid-run (after unfreezing layers) keeps the steps counted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, mlp

STEPS = 10
SWITCH = 4


def _chosen():
    return [lenses.Loss(), lenses.GradientNorms(of=("weight",)), lenses.Optimizer()]


def _run(attach=None):
    """Train with the first layer frozen, then unfreeze it and re-create the optimizer."""
    model = mlp()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    scope = layerscope.watch(model, optimizer=opt, lenses=_chosen()) if attach else None
    losses = []
    for i, (x, y) in enumerate(batches("mlp", STEPS)):
        if i == SWITCH:
            model[0].requires_grad_(True)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            if attach is not None:
                attach(scope, opt)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if scope is not None:
            scope.step(loss=loss)
        losses.append(loss.item())
    if scope is not None:
        scope.close()
    return losses, model, scope


def _check(run, reference):
    losses, model, scope = run
    ref_losses, ref_model, _ = reference
    assert losses == ref_losses
    for a, b in zip(ref_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scope.step_count == STEPS
    recorded = {r.step: r.value for r in select(scope.records(), tag="loss", statistic="last")}
    assert recorded == pytest.approx(dict(enumerate(losses)), rel=1e-6)
    # the new optimizer's momentum buffers are read, on the steps after the switch only
    momentum = {r.step for r in scope.records() if "momentum" in r.quantity}
    assert momentum
    assert min(momentum) >= SWITCH


def test_a_re_created_optimizer_is_followed_with_a_warning():
    reference = _run()
    with pytest.warns(RuntimeWarning, match=r"new SGD steps the watched parameters.*step 4") as w:
        run = _run(attach=lambda scope, opt: None)
    assert len(w) == 1
    _check(run, reference)


def test_attach_optimizer_follows_it_quietly():
    _check(_run(attach=lambda scope, opt: scope.attach_optimizer(opt)), _run())


def test_another_optimizer_of_other_parameters_is_not_followed():
    model, critic = mlp(), nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    critic_opt = torch.optim.SGD(critic.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=[lenses.Loss()]) as scope:
        for x, y in batches("mlp", 3):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            critic(model(x).detach()).sum().backward()
            critic_opt.step()
    assert scope.step_count == 3
    assert scope.optimizer is opt


def test_a_step_that_never_closes_stays_bounded():
    model = mlp()
    never_stepped = torch.optim.SGD(model.parameters(), lr=0.05)
    scope = layerscope.watch(model, optimizer=never_stepped, lenses=[lenses.Activations()])
    x = torch.randn(4, 8)
    for _ in range(600):  # the user steps another optimizer layerscope cannot see
        model(x).sum().backward()
    pending = scope._windows._current
    assert pending
    assert max(len(p.summaries) for p in pending.values()) <= 256
    scope.close()
