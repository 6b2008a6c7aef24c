"""Saturated tanh / sigmoid outputs and GELU / SiLU stuck in the negative tail."""

import pytest
import torch
from torch import nn

from health_models import act_mlp, kinds, run, teacher_data
from layerscope.health import Health, SaturationCheck
from layerscope.lenses import Loss
from layerscope.stats.tensors import count_exceeding, count_exceeding_torch


def test_tanh_with_weights_times_five_saturates():
    scope, _ = run(act_mlp(nn.Tanh, scale=5.0), teacher_data(12))
    found = [f for f in scope.findings() if f.kind == "saturation"]
    assert {f.site for f in found} == {"1:output", "3:output"}
    # independent check: the share of |tanh| > 0.97 at the first step, by torch
    model = act_mlp(nn.Tanh, scale=5.0)
    x = teacher_data(1)[0][0]
    share = float((model[1](model[0](x)).abs() > 0.97).float().mean())
    first = next(f for f in found if f.site == "1:output")
    assert first.step == 4  # judged once its 5-step window is full
    assert share > 0.25
    assert kinds(scope) == [("saturation", "1:output"), ("saturation", "3:output")]


def test_sigmoid_saturates_at_both_ends():
    scope, _ = run(act_mlp(nn.Sigmoid, scale=10.0), teacher_data(12))
    assert ("saturation", "1:output") in kinds(scope)


@pytest.mark.parametrize("act", [nn.GELU, nn.SiLU])
def test_bias_minus_ten_leaves_gelu_and_silu_in_the_negative_tail(act):
    scope, _ = run(act_mlp(act, first_bias=-10.0), teacher_data(12))
    tails = [f for f in scope.findings() if f.kind == "negative_tail"]
    assert [f.site for f in tails] == ["1:output"]
    assert tails[0].evidence["saturated_fraction"] == 1.0


def test_counts_only_on_the_activations_that_need_them():
    model = act_mlp(nn.Tanh)
    health = Health(checks=("saturation",))
    health.select(model.named_modules())
    assert health.needs_at("1", "output").exceed == frozenset({(0.97, True)})
    assert health.needs_at("0", "output").exceed == frozenset()
    assert health.needs_at("1", "output.grad").exceed == frozenset()


def test_exceed_counts_match_torch_on_both_paths():
    x = torch.randn(7, 33, dtype=torch.float64) * 2
    x[0, 0] = float("nan")
    for level, absolute in ((0.97, True), (-0.01, False), (0.0, False)):
        expected = int(((x.abs() if absolute else x) > level).sum())
        assert count_exceeding(x, level, absolute) == expected
        assert int(count_exceeding_torch(x, level, absolute)) == expected


class Probe(SaturationCheck):
    """A check is a method or two: this one only keeps what it reads."""

    name = "probe"

    def run(self, view):
        self.shares = getattr(self, "shares", {})  # a late loss is reviewed on its own
        for site, w in view.windows.items():
            module_type = view.module_types.get(w.module)
            if w.kind == "output" and module_type is not None:
                share = self.saturated(w, module_type)
                if share is not None:
                    self.shares[site] = share
        return []


def test_the_scope_hands_the_counts_to_the_check():
    data = teacher_data(1)
    scope, _ = run(act_mlp(nn.Sigmoid, scale=10.0), data, lenses=[Loss(), Health(checks=[Probe()])])
    probe = scope.lenses[1].checks[0]  # the scope's own copy of the lens holds the run's state
    fresh = act_mlp(nn.Sigmoid, scale=10.0)  # the weights the first forward pass used
    h1 = fresh[1](fresh[0](data[0][0]))
    h2 = fresh[3](fresh[2](h1))
    for site, h in (("1:output", h1), ("3:output", h2)):
        expected = float(((h > 0.97) | (h <= 0.03)).float().mean())
        assert probe.shares[site] == pytest.approx(expected, abs=1e-12)
    assert set(probe.shares) == {"1:output", "3:output"}
