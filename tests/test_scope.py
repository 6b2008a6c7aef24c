"""The Scope end to end: real models trained a few steps, every number against torch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, cnn, mlp, train, transformer


def _value(records, **fields):
    found = select(records, **fields)
    assert len(found) == 1, (fields, found)
    return found[0].value


def test_training_is_bitwise_identical_and_hooks_are_removed():
    data = batches("cnn", 4)
    plain = cnn()
    observed = copy.deepcopy(plain)
    losses_plain, _ = train(plain, data)
    losses_obs, scope = train(
        observed, data, scope_factory=lambda m, o: layerscope.watch(m, optimizer=o)
    )
    assert losses_plain == losses_obs
    for (n, a), (_, b) in zip(
        plain.state_dict().items(), observed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    assert len(scope.records()) > 0
    for m in observed.modules():
        assert not m._forward_hooks
        assert not m._forward_pre_hooks
        assert not m._backward_hooks
        assert not m._backward_pre_hooks
    for p in observed.parameters():
        assert not getattr(p, "_post_accumulate_grad_hooks", None)


def test_a_closed_scope_is_freed_with_its_last_reference():
    # Not left to the cycle collector: under torch.distributed that runs late in interpreter
    # shutdown, after the process group (and FSDP's state the model holds) is gone.
    import gc
    import weakref

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with layerscope.watch(model, optimizer=opt) as scope:
        train_step = batches("mlp", 1)[0]
        nn.functional.cross_entropy(model(train_step[0]), train_step[1]).backward()
        opt.step()
        scope.step()
    ref = weakref.ref(scope)
    gc.disable()
    try:
        del scope
        assert ref() is None
    finally:
        gc.enable()


def test_optimizer_hooks_are_removed():
    model = mlp()
    opt = torch.optim.Adam(model.parameters())
    before = (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks))
    layerscope.watch(model, optimizer=opt).close()
    assert (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)) == before


def test_gradient_accumulation_sees_the_accumulated_gradient():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scope = layerscope.watch(model, optimizer=opt, lenses=[lenses.GradientNorms(of=("weight",))])
    data = batches("mlp", 6, batch=8)
    expected = []
    for (x1, y1), (x2, y2) in zip(data[0::2], data[1::2], strict=False):
        nn.functional.cross_entropy(model(x1), y1).backward()
        nn.functional.cross_entropy(model(x2), y2).backward()
        expected.append(model[0].weight.grad.norm().item())
        opt.step()
        opt.zero_grad()
    scope.close()
    got = [r.value for r in select(scope.records(), site="0:weight.grad")]
    assert got == pytest.approx(expected, rel=1e-6)


def test_no_grad_evaluation_is_not_observed():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with layerscope.watch(model, optimizer=opt, lenses=[lenses.Activations()]) as scope:
        x, y = batches("mlp", 1)[0]
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        n = len(scope.records())
        with torch.no_grad():
            model(torch.randn(4, 8))
            model(torch.randn(4, 8))
        opt.step()
    assert n > 0
    assert len(scope.records()) == n  # the step with only evaluation passes adds nothing


def test_inplace_relu_gives_the_same_gradients_as_out_of_place():
    data = batches("mlp", 3)
    runs = []
    for inplace in (False, True):
        _, scope = train(
            mlp(inplace=inplace),
            data,
            scope_factory=lambda m, o: layerscope.watch(
                m, optimizer=o, lenses=[lenses.GradientNorms(of=("output",))]
            ),
        )
        runs.append({(r.step, r.site): r.value for r in scope.records() if r.quantity == "l2"})
    assert runs[0].keys() == runs[1].keys()
    assert "0:output.grad" in {site for _, site in runs[0]}
    for key in runs[0]:
        assert runs[1][key] == pytest.approx(runs[0][key], rel=1e-6), key


def test_bfloat16_autocast_on_cpu():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with layerscope.watch(model, optimizer=opt) as scope:
        for x, y in batches("mlp", 2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            scope.step(loss=loss)
    means = select(scope.records(), site="0:output", statistic="mean")
    assert len(means) == 2
    assert all(math.isfinite(r.value) for r in means)
    assert len(select(scope.records(), tag="loss")) == 2


def test_integer_outputs_and_empty_batches_are_skipped_quietly():
    class WithIndex(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return y, y.argmax(dim=1), y > 0

    model = WithIndex()
    with layerscope.watch(
        model,
        lenses=[
            lenses.Activations(names="", statistics=("mean",)),
            lenses.Activations(names="fc", tag="fc"),
        ],
    ) as scope:
        out, _, _ = model(torch.randn(5, 4))
        out.sum().backward()
        scope.step()
        out, _, _ = model(torch.randn(0, 4))
        out.sum().backward()
        scope.step()
    sites = {r.site for r in scope.records()}
    assert "model:output[0]" in sites
    assert "model:output[1]" not in sites
    assert "model:output[2]" not in sites
    assert {r.step for r in select(scope.records(), site="fc:output")} == {0}


def test_transformer_encoder_sites():
    model = transformer()
    _, scope = train(
        model,
        batches("transformer", 2),
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o),
    )
    sites = {r.site for r in scope.records()}
    assert "0.layers.0.linear1:output" in sites
    assert "0.layers.1.linear2:weight.grad" in sites
    assert "0.layers.0.norm1:weight" in sites


def test_a_loss_reported_after_the_optimizer_step_joins_its_step_once():
    reviewed: list[tuple[int, set[str]]] = []

    class Judge(lenses.Loss):
        def review(self, ctx, records):
            reviewed.append((ctx.step, {r.tag for r in records}))
            return []

    _, scope = train(
        mlp(),
        batches("mlp", 12),
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[*layerscope.default_lenses(optimizer=True), Judge(tag="judge")]
        ),
    )
    # Lenses that judge a step see it whole, the loss included, and once.
    assert [step for step, _ in reviewed] == list(range(12))
    assert all({"loss", "judge", "activations", "gradients"} <= tags for _, tags in reviewed)
    records = scope.records()
    keys = [(r.step, r.tag, r.site, r.quantity, r.statistic) for r in records]
    assert len(keys) == len(set(keys))


def test_steps_observing_nothing_run_without_hooks():
    """Between observed steps the modules and parameters carry none of layerscope's hooks."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    hooked = lambda: (  # noqa: E731
        sum(len(m._forward_hooks) for m in model.modules()),
        sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters()),
    )
    expected_norms = {}
    with layerscope.watch(
        model, optimizer=opt, lenses=[lenses.Activations(), lenses.GradientNorms()], every=2
    ) as scope:
        for step, (x, y) in enumerate(batches("mlp", 5)):
            # observed steps: the gatherers' hooks, and the root forward hook and one parameter
            # hook that tell a pass that raised or a skipped step from one that counted
            assert hooked() == ((6, 7) if step % 2 == 0 else (0, 0)), step
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            expected_norms[step] = model[2].weight.grad.norm().item()
            opt.step()
    assert hooked() == (0, 0)
    records = scope.records()
    assert sorted({r.step for r in records}) == [0, 2, 4]
    for step in (0, 2, 4):
        got = _value(records, step=step, site="2:weight.grad", quantity="l2")
        assert got == pytest.approx(expected_norms[step], rel=1e-5)


def test_every_thins_the_default_lenses_alike():
    """watch(every=N): the slow default lenses keep their pace relative to the others."""
    _, scope = train(
        mlp(),
        batches("mlp", 21),
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o, every=2),
    )
    steps = lambda tag: sorted({r.step for r in select(scope.records(), tag=tag)})  # noqa: E731
    assert steps("activations") == list(range(0, 21, 2))
    assert steps("parameters") == steps("optimizer") == [0, 20]
    assert steps("distributions") == [0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lenses": [lenses.Activations(modules=nn.Conv2d)]}, "selects no module"),
        ({"lenses": [lenses.Activations(names="nope.*")]}, "nope"),
        ({"every": 0}, "every"),
        ({"lenses": ["activations"]}, "Lens"),
    ],
)
def test_attach_time_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layerscope.watch(mlp(), **kwargs)
