"""The GradientNorms lens: per-site gradient norms and the global norm, against torch."""

from __future__ import annotations

import math

import pytest
import torch

import layerscope
from layerscope.lenses import GradientNorms
from layerscope.records import select
from layerscope.reduce import NOTHING, Needs, SiteWindow
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


class WindowsSeen(layerscope.lenses.Lens):
    """Keeps what the reducer made of its sites for the other lenses; asks for nothing."""

    default_tag = "seen"
    kinds = ("weight.grad", "output")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: dict[int, dict[str, SiteWindow]] = {}

    def needs(self, kind: str) -> Needs:
        return NOTHING

    def emit(self, ctx, sites):
        self.seen[ctx.step] = {s: ctx.windows[s] for s in sites if s in ctx.windows}
        return []


@pytest.mark.parametrize(
    ("extra", "norms_only"),
    [((), True), ((GradientNorms(of=("weight",), statistics=("l2", "std"), tag="g2"),), False)],
    ids=["defaults", "a lens reads the std"],
)
@pytest.mark.parametrize("device_path", [False, True], ids=["engine", "torch ops"])
def test_gradients_whose_lenses_read_only_norms_are_read_for_their_norms(
    extra, norms_only, device_path
):
    """The default lenses read a parameter gradient's L2 norm and counts alone: it is read for
    its sum of squares (its mean is not computed) and its norm is torch's; a lens asking for
    more gets the full summary. Outputs, whose statistics need moments, get it always."""
    expected: dict[int, dict[str, float]] = {}

    def capture(step, m):
        expected[step] = {n: p.grad.norm().item() for n, p in m.named_parameters()}

    def factory(model, optimizer):
        lenses = [*layerscope.default_lenses(optimizer=True), *extra, WindowsSeen()]
        scope = layerscope.watch(model, optimizer, lenses=lenses)
        scope.force_torch_reducer = device_path  # the reducer of tensors on an accelerator
        return scope

    _, scope = train(
        mlp(),
        batches("mlp", 3),
        after_backward=capture,
        scope_factory=factory,
    )
    step = 1  # not a step of the distributions lens, whose histograms read everything
    (lens,) = (lens for lens in scope.lenses if isinstance(lens, WindowsSeen))  # watch's copy
    windows = lens.seen[step]
    grads = [w for w in windows.values() if w.kind == "weight.grad"]
    assert grads
    assert any(w.kind == "output" for w in windows.values())
    for w in grads:
        assert math.isnan(w.summary.mean) is norms_only, w.site
        norm = expected[step][f"{w.module}.weight"]
        assert w.summary.l2 == pytest.approx(norm, rel=1e-5)
        assert w.summary.count == w.summary.size > 0
    for w in windows.values():
        if w.kind == "output":
            assert math.isfinite(w.summary.mean), w.site
