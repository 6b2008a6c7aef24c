"""What every lens shares (lenses/base.py): module selection, schedules, option checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, mlp, train


def test_identity_and_dropout_are_skipped_unless_named():
    model = nn.Sequential(
        nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Identity(), nn.Linear(8, 2)
    )
    x = torch.randn(16, 4)
    for chosen, want in (
        (lenses.Activations(), {"0", "2", "4"}),
        (lenses.Activations(names=("1", "3")), {"1", "3"}),
    ):
        with layerscope.watch(model, lenses=[chosen]) as scope:
            model(x).sum().backward()
            scope.step()
        assert {r.site.split(":")[0] for r in scope.records()} == want


def test_every_and_schedules():
    _, scope = train(
        mlp(),
        batches("mlp", 7),
        scope_factory=lambda m, o: layerscope.watch(
            m,
            optimizer=o,
            every=3,
            lenses=[
                lenses.Activations(),
                lenses.Loss(every=1),
                lenses.OutputNorms(first=2, every=5),
            ],
        ),
    )
    steps = lambda tag: sorted({r.step for r in select(scope.records(), tag=tag)})  # noqa: E731
    assert steps("activations") == [0, 3, 6]
    assert steps("loss") == list(range(7))
    assert steps("output_norms") == [0, 1, 5]


def test_bad_lens_options_and_non_module():
    with pytest.raises(ValueError, match="unknown statistic 'average'"):
        lenses.Activations(statistics=("average",))
    with pytest.raises(ValueError, match="every"):
        lenses.Activations(every=-2)
    with pytest.raises(ValueError, match="schedule"):
        lenses.Activations(schedule=3)
    with pytest.raises(ValueError, match="nn.Module"):
        layerscope.watch(lambda x: x)
