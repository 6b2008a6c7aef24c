"""The DeadUnits lens: units that never fire over a window, per feature and per channel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, cnn, mlp, train


def test_planted_dead_relu_is_found_and_healthy_layers_are_not():
    model = mlp(bias_init=-10.0)
    _, scope = train(
        model,
        batches("mlp", 25),
        lr=0.01,
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.DeadUnits(window=20)]
        ),
    )
    records = scope.records()
    dead = {
        r.site: r.value
        for r in select(records, quantity="dead", statistic="fraction")
        if r.step == 24
    }
    assert dead["1:output"] == pytest.approx(1.0)
    assert dead["3:output"] < 0.5
    # brute force: no unit of the first ReLU fired on any training batch
    with torch.no_grad():
        fired = torch.stack([model[:2](x) > 0 for x, _ in batches("mlp", 25)]).any(0).any(0)
    assert not fired.any()


def test_cnn_dead_channels_use_the_channel_axis():
    model = cnn()
    nn.init.constant_(model[0].bias, -10.0)
    nn.init.constant_(model[0].weight, 0.0)
    _, scope = train(
        model,
        batches("cnn", 3),
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.DeadUnits(window=2)]
        ),
    )
    last = {
        r.site: r.value
        for r in select(scope.records(), quantity="dead", statistic="count")
        if r.step == 2
    }
    assert last["1:output"] == 4  # all four channels of the first ReLU
    assert last["0:output"] == 0  # a Linear/Conv unit is active when non-zero
