"""The Parameters lens: statistics of parameter values as the optimizer step finds them."""

from __future__ import annotations

import pytest
import torch

import layerscope
from layerscope import lenses
from models import batches, record_value, train, transformer

STATISTICS = ("mean", "std", "min", "max", "l2")


def test_parameter_statistics_match_torch_before_each_update():
    model = transformer()
    before: dict[int, dict[str, torch.Tensor]] = {}

    def capture(step, m):  # after backward, before opt.step(): the values the step reads
        before[step] = {n: p.detach().double().clone() for n, p in m.named_parameters()}

    _, scope = train(
        model,
        batches("transformer", 3),
        after_backward=capture,
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.Parameters(statistics=STATISTICS)]
        ),
    )
    records = scope.records()
    for step, params in before.items():
        # every parameter, MultiheadAttention's own in_proj_weight too
        sites = {r.site for r in records if r.step == step}
        assert sites == {":".join(n.rsplit(".", 1)) for n in params}
        for name, p in params.items():
            site = ":".join(name.rsplit(".", 1))
            want = {
                ("value", "mean"): p.mean(),
                ("value", "std"): p.std(correction=0),
                ("value", "min"): p.min(),
                ("value", "max"): p.max(),
                ("l2", "last"): p.norm(),
            }
            for (quantity, statistic), value in want.items():
                got = record_value(
                    records, step=step, site=site, quantity=quantity, statistic=statistic
                )
                scale = p.abs().mean().item()  # means of weights near zero: sums that cancel
                assert got == pytest.approx(value.item(), rel=1e-5, abs=1e-6 * scale), (
                    step,
                    site,
                    statistic,
                )
    # the parameters moved between the steps: the records are not the initial values again
    assert record_value(records, step=2, site="2:weight", quantity="l2") != pytest.approx(
        before[0]["2.weight"].norm().item(), rel=1e-6
    )
