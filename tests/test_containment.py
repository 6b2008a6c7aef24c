"""A failure inside layerscope never reaches the user's forward, backward or optimizer step.

Each test injects a failure at one point of the pipeline and trains a real model: the losses
and parameters must be bitwise those of the same training without layerscope, and the failure
must be reported once, naming the part that failed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.gatherers.base import OutputLeaves
from layerscope.gatherers.parameters import ParameterGatherer
from layerscope.history import RecordHistory
from layerscope.reduce.windows import WindowBuilder
from layerscope.run.gate import Gate
from models import batches, mlp, train

STEPS = 6


def _lenses():
    return [
        lenses.Loss(),
        lenses.Activations(),
        lenses.GradientNorms(of=("weight", "output")),
    ]


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


def _reference():
    model = mlp()
    losses, _ = train(model, batches("mlp", STEPS))
    return losses, model


def _assert_same_training(losses, model, reference):
    ref_losses, ref_model = reference
    assert losses == ref_losses
    for (name, a), (_, b) in zip(
        ref_model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def _train_observed(prepare=None):
    model = mlp()

    def factory(m, opt):
        scope = layerscope.watch(m, optimizer=opt, lenses=_lenses(), flush_every=2)
        if prepare is not None:
            prepare(scope)
        return scope

    losses, scope = train(model, batches("mlp", STEPS), scope_factory=factory)
    return losses, model, scope


class _RaisingSet(set):
    def add(self, item):
        raise RuntimeError("injected failure")


@pytest.mark.parametrize(
    ("target", "attribute", "part"),
    [
        (OutputLeaves, "__call__", "ForwardGatherer._observe_call"),
        (ParameterGatherer, "before_step", "ParameterGatherer.before_step"),
        (WindowBuilder, "close_step", "WindowBuilder.close_step"),
        (WindowBuilder, "ready", "WindowBuilder.ready"),
        (WindowBuilder, "add_to_closed", "site loss"),
        (RecordHistory, "extend", "RecordHistory.extend"),
    ],
)
def test_an_injected_failure_warns_once_and_training_is_unchanged(
    monkeypatch, target, attribute, part
):
    reference = _reference()
    monkeypatch.setattr(target, attribute, _boom)
    with pytest.warns(RuntimeWarning, match="injected failure") as caught:
        losses, model, _ = _train_observed()
    assert len(caught) == 1
    assert part in str(caught[0].message)
    _assert_same_training(losses, model, reference)


def test_a_failing_gradient_hook_leaves_the_gradients_alone(monkeypatch):
    reference = _reference()
    observe = Gate.observe

    def failing_on_gradients(self, module, kind, site, tensor):
        if kind == "output.grad":
            raise RuntimeError("injected failure")
        observe(self, module, kind, site, tensor)

    monkeypatch.setattr(Gate, "observe", failing_on_gradients)
    with pytest.warns(RuntimeWarning, match="injected failure") as caught:
        losses, model, scope = _train_observed()
    assert len(caught) == 1
    assert "ForwardGatherer._grad_hook" in str(caught[0].message)
    _assert_same_training(losses, model, reference)
    for m in model.modules():  # the failed gatherer's hooks were removed, not left behind
        assert not m._forward_hooks


def test_a_failing_parameter_hook_leaves_training_alone():
    reference = _reference()

    def break_parameter_hooks(scope):
        for gatherer in scope._crew.gatherers:
            if isinstance(gatherer, ParameterGatherer):
                gatherer._fresh = _RaisingSet()

    with pytest.warns(RuntimeWarning, match="injected failure") as caught:
        losses, model, scope = _train_observed(break_parameter_hooks)
    assert len(caught) == 1
    assert "ParameterGatherer._arrived" in str(caught[0].message)
    _assert_same_training(losses, model, reference)
    for p in model.parameters():
        assert not p._post_accumulate_grad_hooks
    # the other gatherers went on observing
    assert any(r.site == "0:output" and r.step == STEPS - 1 for r in scope.records())


def test_after_a_pipeline_failure_records_so_far_are_kept(monkeypatch):
    close_step = WindowBuilder.close_step

    def failing_at_step_3(self, step, epoch):
        if step == 3:
            raise RuntimeError("injected failure")
        close_step(self, step, epoch)

    monkeypatch.setattr(WindowBuilder, "close_step", failing_at_step_3)
    with pytest.warns(RuntimeWarning, match="WindowBuilder.close_step"):
        _, _, scope = _train_observed()
    assert sorted({r.step for r in scope.records()}) == [0, 1, 2]


@pytest.mark.parametrize(
    "unreadable",
    [lambda loss: loss.detach().to("meta"), lambda loss: loss.detach().reshape(1).to_sparse()],
    ids=["meta", "sparse"],
)
def test_a_late_loss_a_statistic_cannot_read_is_skipped_quietly(unreadable):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    data = batches("mlp", 3)
    with layerscope.watch(model, optimizer=opt, lenses=_lenses(), flush_every=2) as scope:
        for x, y in data:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            scope.step(loss=unreadable(loss))  # after opt.step(): the late-loss path
    records = scope.records()
    assert not [r for r in records if r.tag == "loss"]
    assert {r.step for r in records} == {0, 1, 2}


def test_an_unreadable_python_loss_warns_once():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = batches("mlp", 1)[0]
    scope = layerscope.watch(model, lenses=[lenses.Loss()])
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    with pytest.warns(RuntimeWarning, match="site loss") as caught:
        scope.step(loss="not a number")
    scope.step(loss="not a number either")  # no second warning (filterwarnings=error)
    scope.close()
    assert len(caught) == 1
    assert scope.step_count == 2


def test_a_failing_statistic_leaves_the_sites_other_statistics(monkeypatch):
    from layerscope import stats

    symlog = stats.Histogram.symlog

    def failing_histogram(**edges):
        histogram = symlog(**edges)

        class Failing:
            def update(self, sample):
                raise RuntimeError("injected failure")

            def __getattr__(self, name):
                return getattr(histogram, name)

        return Failing()

    monkeypatch.setattr(stats.Histogram, "symlog", staticmethod(failing_histogram))
    model = mlp()
    distributions = lenses.Distributions(statistics=("median", "histogram"), every=1)
    with pytest.warns(RuntimeWarning, match="histogram of site") as caught:
        _, scope = train(
            model,
            batches("mlp", STEPS),
            scope_factory=lambda m, o: layerscope.watch(
                m, optimizer=o, lenses=[lenses.Activations(), distributions]
            ),
        )
    sites = {r.site for r in scope.records() if r.tag == "distributions"}
    assert {r.site for r in scope.records() if r.tag == "activations"} <= sites
    assert len(caught) == len(sites)  # once per site, not once per step
    for site in sites:
        medians = [r.step for r in scope.records() if r.site == site and r.statistic == "median"]
        assert medians == list(range(STEPS)), site  # the site's quantiles went on
    for r in scope.records():
        if r.tag == "activations":  # and its summary statistics
            assert {x.step for x in scope.records() if x.site == r.site} == set(range(STEPS))
    assert not [r for r in scope.records() if r.statistic == "histogram"]
