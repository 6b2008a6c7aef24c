"""The Loss lens: the loss of each step and the spread of per-sample losses."""

from __future__ import annotations

import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, mlp


def test_loss_records_and_per_sample_losses():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with layerscope.watch(model, optimizer=opt, lenses=[lenses.Loss()]) as scope:
        for x, y in batches("mlp", 3):
            per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")
            per_sample.mean().backward()
            opt.step()
            opt.zero_grad()
            scope.step(loss=per_sample)
    for step in range(3):
        assert select(scope.records(), step=step, statistic="last")
    stds = select(scope.records(), statistic="std")
    assert len(stds) == 3
    assert all(r.value > 0 for r in stds)
