"""The OutputNorms lens: L1, L2 and RMS norms of module outputs, against torch."""

from __future__ import annotations

import math

import pytest
import torch

import layerscope
from layerscope import lenses
from models import batches, cnn, record_value, train


def test_output_norms_match_torch():
    model = cnn()
    outputs: dict[int, dict[str, torch.Tensor]] = {}
    step = {"i": 0}
    for name, module in model.named_children():
        module.register_forward_hook(
            lambda mod, args, out, name=name: outputs.setdefault(step["i"], {}).__setitem__(
                name, out.detach().double().clone()
            )
        )

    def advance(i, m):
        step["i"] = i + 1

    _, scope = train(
        model,
        batches("cnn", 3),
        after_backward=advance,
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.OutputNorms(statistics=("l1", "l2", "rms"))]
        ),
    )
    records = scope.records()
    assert {r.tag for r in records} == {"output_norms"}
    checked = 0
    for i, per_module in outputs.items():
        for name, x in per_module.items():
            site = f"{name}:output"
            want = {"l1": x.abs().sum(), "l2": x.norm(), "rms": x.norm() / math.sqrt(x.numel())}
            for quantity, value in want.items():
                got = record_value(records, step=i, site=site, quantity=quantity)
                assert got == pytest.approx(value.item(), rel=1e-5), (i, site, quantity)
                checked += 1
    assert checked == 3 * len(model) * 3  # every step, module and norm
