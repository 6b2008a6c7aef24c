"""Passes that did not count leave no trace: a forward that raised, a step that was skipped.

The reference is the same run without the pass: every record of every step must be the same.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from models import batches, mlp

BAD = 2  # the batch whose pass does not count


def _chosen():
    return [
        lenses.Loss(),
        lenses.Activations(),
        lenses.GradientNorms(of=("weight", "output")),
        lenses.DeadUnits(window=3),
    ]


class _Flaky(nn.Module):
    """An MLP whose forward raises half-way when told to (an OOM, a bad batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        self.fail = False
        self.error: type[BaseException] = RuntimeError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net[:3](x)
        if self.fail:
            raise self.error("out of memory (simulated)")
        return self.net[3:](h)


def _values(scope):
    return {(r.step, r.site, r.quantity, r.statistic): r.value for r in scope.records()}


def _run_flaky(data, fail_at, error=RuntimeError):
    model = _Flaky()
    model.error = error
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_chosen()) as scope:
        for i, (x, y) in enumerate(data):
            opt.zero_grad()
            model.fail = i == fail_at
            try:
                loss = nn.functional.cross_entropy(model(x), y)
            except (RuntimeError, KeyboardInterrupt):
                continue  # the loop skips the batch (or a Ctrl-C asked it to save and go on)
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    return scope


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_forward_that_raised_is_not_pooled_into_the_next_step(error):
    data = batches("mlp", 6)
    reference = _run_flaky(data[:BAD] + data[BAD + 1 :], fail_at=-1)
    with pytest.warns(RuntimeWarning, match="a forward pass raised.*not counted into step 2"):
        observed = _run_flaky(data, fail_at=BAD, error=error)
    assert observed.step_count == reference.step_count == 5
    assert _values(observed) == _values(reference)


def _run_scaled(data, overflow_at):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu")
    chosen = [lenses.Loss(), lenses.Activations(), lenses.GradientNorms(of=("weight",))]
    with layerscope.watch(model, optimizer=opt, lenses=chosen) as scope:
        for i, (x, y) in enumerate(data):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            if i == overflow_at:
                loss = loss * float("inf")
            scaler.scale(loss).backward()
            scaler.step(opt)  # skipped after an overflow
            scaler.update()
            scope.step(loss=loss)
    return scope


def test_a_step_grad_scaler_skipped_is_not_pooled_into_the_next_step():
    data = batches("mlp", 6)
    reference = _run_scaled(data[:BAD] + data[BAD + 1 :], overflow_at=-1)
    observed = _run_scaled(data, overflow_at=BAD)
    assert observed.step_count == reference.step_count == 5
    assert _values(observed) == _values(reference)


def _run_accumulating(data, fail: bool):
    """Two micro-batches a step; on step 1 a third one raises between them."""
    model = _Flaky()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=_chosen()) as scope:
        for step in range(3):
            opt.zero_grad()
            for micro in range(2):
                x, y = data[2 * step + micro]
                if fail and step == 1 and micro == 1:
                    model.fail = True
                    with pytest.raises(RuntimeError, match="simulated"):
                        model(x)
                    model.fail = False
                nn.functional.cross_entropy(model(x), y).div(2).backward()
            opt.step()
    return scope


def test_under_gradient_accumulation_only_the_pass_that_raised_goes():
    data = batches("mlp", 6)
    reference = _run_accumulating(data, fail=False)
    with pytest.warns(RuntimeWarning, match="a forward pass raised"):
        observed = _run_accumulating(data, fail=True)
    assert _values(observed) == _values(reference)


def test_parameters_unfrozen_mid_run_are_observed():
    model = mlp()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    norms = {}
    with layerscope.watch(
        model, optimizer=opt, lenses=[lenses.GradientNorms(of=("weight",))]
    ) as scope:
        for step, (x, y) in enumerate(batches("mlp", 6)):
            if step == 3:
                model[0].requires_grad_(True)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if model[0].weight.grad is not None:
                norms[step] = model[0].weight.grad.norm().item()
            opt.step()
    got = {
        r.step: r.value
        for r in scope.records()
        if r.site == "0:weight.grad" and r.quantity == "l2" and r.statistic == "last"
    }
    assert got == pytest.approx(norms, rel=1e-6)
    assert sorted(got) == [3, 4, 5]


def test_a_module_replaced_mid_run_is_reported():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scope = layerscope.watch(model, optimizer=opt, lenses=[lenses.Activations()], flush_every=2)
    for step, (x, y) in enumerate(batches("mlp", 4)):
        if step == 1:
            model[2] = nn.Linear(32, 16)  # a new head, say
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if step == 1:
            with pytest.warns(RuntimeWarning, match=r"modules changed.*replaced: \['2'\]"):
                opt.step()  # the flush at step 2 looks
        else:
            opt.step()
    scope.close()


def test_parameters_replaced_by_a_dtype_move_are_reported():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scope = layerscope.watch(model, optimizer=opt, lenses=[lenses.GradientNorms()], flush_every=2)
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model.double()  # new Parameter objects: the old ones' hooks would never fire again
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = batches("mlp", 1)[0]
    nn.functional.cross_entropy(model(x.double()), y).backward()
    with pytest.warns(RuntimeWarning, match="new parameter objects: 6"):
        scope.flush()
    scope.close()


def test_closure_evaluations_inside_one_step_are_not_skipped_steps():
    """LBFGS evaluates its closure several times a step, zeroing the gradients first."""
    model = mlp()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3)
    data = batches("mlp", 3)
    first_grads = {}
    with layerscope.watch(
        model, optimizer=opt, lenses=[lenses.GradientNorms(of=("weight",))]
    ) as scope:
        for step, (x, y) in enumerate(data):
            calls = 0

            def closure(x=x, y=y, step=step):
                nonlocal calls
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                calls += 1
                if calls == 1:  # layerscope reads the gradients of the first evaluation
                    first_grads[step] = model[0].weight.grad.norm().item()
                return loss

            opt.step(closure)
            assert calls > 1
    got = {
        r.step: r.value
        for r in scope.records()
        if r.site == "0:weight.grad" and r.quantity == "l2" and r.statistic == "last"
    }
    assert got == pytest.approx(first_grads, rel=1e-6)
