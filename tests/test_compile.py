"""torch.compile: every default lens keeps every statistic on every step, in either order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from models import batches, mlp


def compiled_run(order: str) -> list[layerscope.records.Record]:
    """Three steps of the MLP under the default lenses (distributions on every step)."""
    torch._dynamo.reset()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    chosen = [
        lens if not isinstance(lens, lenses.Distributions) else lenses.Distributions(every=1)
        for lens in layerscope.default_lenses(optimizer=True)
    ]
    # aot_eager: dynamo and AOTAutograd as inductor sees them, without compiling kernels
    forward = model if order == "eager" else None
    if order == "compile-first":
        forward = torch.compile(model, backend="aot_eager")
    scope = layerscope.watch(model, opt, lenses=chosen)
    if order == "watch-first":
        forward = torch.compile(model, backend="aot_eager")
    with scope:
        for x, y in batches("mlp", 3):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    return scope.records()


# Dynamo reads .grad of the tensors it resumes with after a graph break; torch turns the
# warning that raises under filterwarnings=error into an internal error (not shown otherwise).
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.slow
@pytest.mark.parametrize("order", ["watch-first", "compile-first"])
def test_compiled_model_keeps_every_statistic(order):
    # pytest turns warnings into errors: a statistic that fails (and warns) fails the test
    eager = {(r.step, r.site, r.quantity, r.statistic): r for r in compiled_run("eager")}
    compiled = {(r.step, r.site, r.quantity, r.statistic): r for r in compiled_run(order)}
    assert set(compiled) == set(eager)
    assert {key[0] for key in compiled} == {0, 1, 2}
    for key, want in eager.items():
        got = compiled[key]
        if want.histogram is not None:
            assert got.histogram is not None
            assert sum(got.histogram.counts) == sum(want.histogram.counts), key
        else:
            assert got.value == pytest.approx(want.value, rel=1e-4, abs=1e-6, nan_ok=True), key
