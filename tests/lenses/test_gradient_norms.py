"""The GradientNorms lens: per-site gradient norms and the global norm, against torch."""

from __future__ import annotations

import math

import pytest
import torch

import layerscope
from layerscope.records import select
from models import batches, mlp, record_value, train, transformer


def test_weight_grad_norms_match_torch():
    model = mlp()
    expected: dict[int, dict[str, float]] = {}

    def capture(step, m):
        expected[step] = {n: p.grad.norm().item() for n, p in m.named_parameters()}

    _, scope = train(
        model,
        batches("mlp", 5),
        after_backward=capture,
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o),
    )
    records = scope.records()
    for step, norms in expected.items():
        for name, norm in norms.items():
            module, pname = name.rsplit(".", 1)
            got = record_value(
                records,
                step=step,
                tag="gradients",
                site=f"{module}:{pname}.grad",
                quantity="l2",
                statistic="last",
            )
            assert got == pytest.approx(norm, rel=1e-5)
        total = math.sqrt(sum(v * v for v in norms.values()))
        assert record_value(
            records, step=step, tag="gradients", site="", quantity="global_l2"
        ) == pytest.approx(total, rel=1e-5)


def test_default_lenses_cover_every_parameter_of_a_transformer():
    """MultiheadAttention holds its input projection itself, not in a leaf module: the default
    lenses still read it, so the global gradient norm is the whole model's."""
    model = transformer()
    expected: dict[int, float] = {}

    def capture(step, m):
        expected[step] = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in m.parameters()])
        ).item()

    _, scope = train(
        model,
        batches("transformer", 3),
        after_backward=capture,
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o),
    )
    records = scope.records()
    for step, total in expected.items():
        got = record_value(records, step=step, tag="gradients", site="", quantity="global_l2")
        assert got == pytest.approx(total, rel=1e-5)
    site = "0.layers.1.self_attn:in_proj_weight"
    assert record_value(records, step=0, tag="parameters", site=site, quantity="l2") > 0
    assert record_value(records, step=0, tag="optimizer", site=site, quantity="update") > 0
    # Its output is read at the container: the forward never calls out_proj
    assert select(records, site="0.layers.1.self_attn:output.grad")
    assert not any(r.site.startswith("0.layers.1.self_attn.out_proj:output") for r in records)
