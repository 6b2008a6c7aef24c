"""Findings on transformers' GPT-2 and BERT (small configs): planted faults are found there."""

from __future__ import annotations

import pytest
import torch

from hf_models import bert, gpt2, train_lm
from layerscope import health, lenses

#: model builder, the first MLP's input layer, its activation
MLPS = {
    "gpt2": (gpt2, "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.act"),
    "bert": (
        bert,
        "bert.encoder.layer.0.intermediate.dense",
        "bert.encoder.layer.0.intermediate.intermediate_act_fn",
    ),
}


def planted(name: str, bias: float) -> torch.nn.Module:
    make, layer, _ = MLPS[name]
    model = make()
    with torch.no_grad():
        model.get_submodule(layer).bias.fill_(bias)
    return model


def activity_lenses() -> list[lenses.Lens]:
    return [lenses.DeadUnits(window=4), lenses.GradientDeath(window=4), health.Health()]


@pytest.mark.parametrize("name", list(MLPS))
def test_a_dead_mlp_is_found(name):
    # A bias of -100 puts every pre-activation deep in GELU's flat tail: exactly zero outputs
    # (0.5·x·(1 + tanh(...)) with tanh = -1) and exactly zero gradients into the layer.
    _, layer, act = MLPS[name]
    scope, _ = train_lm(planted(name, -100.0), 6, lenses=activity_lenses())
    found = {(f.kind, f.site, f.severity) for f in scope.findings()}
    assert ("dead_units", f"{act}:output", "error") in found
    assert ("gradient_death", f"{layer}:output.grad", "error") in found


@pytest.mark.parametrize("name", list(MLPS))
def test_a_saturated_activation_is_found(name):
    # A bias of -3: GELU(-3 ± a little) ≈ -0.004, in the flat negative tail, but not zero.
    _, _, act = MLPS[name]
    scope, _ = train_lm(planted(name, -3.0), 6, lenses=activity_lenses())
    assert [(f.kind, f.site) for f in scope.findings()] == [("negative_tail", f"{act}:output")]


def test_units_are_selected_by_name_on_transformers_layers():
    scope, _ = train_lm(gpt2(), 1, lenses=[lenses.DeadUnits(names="transformer.h.0.mlp.*")])
    sites = {r.site for r in scope.records() if r.quantity == "active"}
    assert sites == {
        "transformer.h.0.mlp.c_fc:output",
        "transformer.h.0.mlp.act:output",
        "transformer.h.0.mlp.c_proj:output",
    }
