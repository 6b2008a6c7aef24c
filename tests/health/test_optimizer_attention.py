"""Checks that read records of lenses built elsewhere (optimizer, attention): fed records
directly, and end to end when ``layerscope.lenses`` has the lens."""

import pytest
from torch import nn

import layerscope
from health_models import act_mlp, run, teacher_data
from layerscope.health import AttentionCheck, EpsDominanceCheck, StepView, UpdateRatioCheck
from layerscope.records import Record


def feed(check, series, quantity, statistic):
    """Run the check over steps of records {site: value}; return every finding it yields."""
    out = []
    for step, values in enumerate(series):
        records = [Record(step, 0, "t", site, quantity, statistic, v) for site, v in values.items()]
        out.extend(check.run(StepView(step, {}, records, {})))
    return out


def test_update_ratio_out_of_band_both_ways():
    steps = [{"fc1:weight": 1e-3, "fc2:weight": 0.8, "fc3:weight": 0.0}] * 6
    found = feed(UpdateRatioCheck(), steps, "update_ratio", "last")
    assert {(f.kind, f.site) for f in found} == {
        ("update_ratio_high", "fc2:weight"),
        ("update_ratio_low", "fc3:weight"),
    }
    assert min(f.step for f in found) == 4  # a 5-step median first


def test_update_ratio_band_is_an_option():
    steps = [{"fc1:weight": 1e-3}] * 5
    assert feed(UpdateRatioCheck(band=(-2.0, -1.0)), steps, "update_ratio", "last")[0].kind == (
        "update_ratio_low"
    )


def test_eps_dominance():
    steps = [{"fc1:weight": 0.9, "fc2:weight": 0.01}] * 5
    found = feed(EpsDominanceCheck(), steps, "eps_dominance", "fraction")
    assert [(f.kind, f.site) for f in found] == [("eps_dominated", "fc1:weight")]


def test_attention_collapse_and_late_uniformity():
    check = AttentionCheck(min_steps=20)
    steps = [
        {"enc:attention.head0": 0.01, "enc:attention.head1": 0.999, "enc:attention.head2": 0.6}
    ] * 25
    found = feed(check, steps, "entropy_ratio", "mean")
    assert (found[0].kind, found[0].site, found[0].step) == (
        "attention_collapse",
        "enc:attention.head0",
        9,
    )  # once its 10-step window is full
    kinds = {(f.kind, f.site) for f in found}
    assert kinds == {
        ("attention_collapse", "enc:attention.head0"),
        ("attention_uniform", "enc:attention.head1"),
    }
    assert min(f.step for f in found if f.kind == "attention_uniform") == 19


def test_uniform_attention_early_in_training_is_no_finding():
    steps = [{"enc:attention.head0": 0.999}] * 30
    assert feed(AttentionCheck(), steps, "entropy_ratio", "mean") == []


@pytest.mark.skipif(not hasattr(layerscope.lenses, "Optimizer"), reason="no Optimizer lens yet")
def test_learning_rate_times_hundred_leaves_the_update_band_end_to_end():
    lenses = [*layerscope.default_lenses(), layerscope.lenses.Optimizer()]
    scope, _ = run(act_mlp(nn.ReLU), teacher_data(12), lr=5.0, lenses=lenses)
    assert any(f.kind == "update_ratio_high" for f in scope.findings())
    healthy, _ = run(act_mlp(nn.ReLU), teacher_data(12), lenses=lenses)
    assert not [f for f in healthy.findings() if f.kind.startswith("update_ratio")]
