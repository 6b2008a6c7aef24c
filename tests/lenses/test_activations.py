"""The Activations lens: statistics of module outputs against numpy on the captured outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope
from layerscope import lenses
from models import batches, mlp, record_value, train


def test_activation_statistics_match_torch():
    model = mlp()
    outputs: dict[int, dict[str, torch.Tensor]] = {}
    step = {"i": 0}
    handles = [
        m.register_forward_hook(
            lambda mod, a, out, name=name: outputs.setdefault(step["i"], {}).__setitem__(
                name, out.detach().clone()
            )
        )
        for name, m in model.named_children()
    ]

    def advance(i, m):
        step["i"] = i + 1

    _, scope = train(
        model,
        batches("mlp", 4),
        after_backward=advance,
        scope_factory=lambda m, o: layerscope.watch(
            m,
            optimizer=o,
            lenses=[
                lenses.Activations(
                    statistics=("mean", "std", "min", "max", "zero_fraction", "median", "iqr")
                )
            ],
        ),
    )
    for h in handles:
        h.remove()
    records = scope.records()
    for i, per_module in outputs.items():
        for name, out in per_module.items():
            x = out.double().numpy().ravel()
            site = f"{name}:output"
            assert record_value(records, step=i, site=site, statistic="mean") == pytest.approx(
                x.mean(), abs=1e-6
            )
            assert record_value(records, step=i, site=site, statistic="std") == pytest.approx(
                x.std(), rel=1e-5
            )
            assert record_value(records, step=i, site=site, statistic="min") == pytest.approx(
                x.min()
            )
            assert record_value(records, step=i, site=site, statistic="max") == pytest.approx(
                x.max()
            )
            assert record_value(
                records, step=i, site=site, statistic="zero_fraction"
            ) == pytest.approx((x == 0).mean())
            assert record_value(records, step=i, site=site, statistic="median") == pytest.approx(
                np.quantile(x, 0.5), rel=1e-6, abs=1e-7
            )
            q25, q75 = np.quantile(x, [0.25, 0.75])
            assert record_value(records, step=i, site=site, statistic="iqr") == pytest.approx(
                q75 - q25, rel=1e-6, abs=1e-7
            )
