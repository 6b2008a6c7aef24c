"""Vanishing gradients across depth (a 30-layer sigmoid MLP), exploding ones over time (lr x100)."""

import math

from torch import nn

from health_models import act_mlp, kinds, run, teacher_data


def test_thirty_sigmoid_layers_vanish():
    model = act_mlp(nn.Sigmoid, depth=30, width=16)
    scope, _ = run(model, teacher_data(8))
    found = [f for f in scope.findings() if f.kind == "vanishing_gradients"]
    assert len(found) == 1
    f = found[0]
    assert f.sites == ("0:weight.grad", "60:weight.grad")  # first and last Linear, model order
    assert f.step == 4
    # independent: the ratio of the two weight-gradient norms, by torch, at the last step
    ratio = f.evidence["first"] / f.evidence["last"]
    assert math.log10(ratio) < -4
    assert kinds(scope) == [("vanishing_gradients", "0:weight.grad")]


def test_a_shallow_sigmoid_mlp_does_not_vanish():
    scope, _ = run(act_mlp(nn.Sigmoid, depth=3, width=16), teacher_data(12))
    assert kinds(scope) == []


def test_learning_rate_times_hundred_explodes():
    scope, losses = run(act_mlp(nn.ReLU), teacher_data(30), lr=5.0)
    found = {f.kind: f for f in scope.findings()}
    spike = found["gradient_spike"]
    assert spike.site == ""
    assert spike.evidence["global_l2"] > 10 * spike.evidence["median"]
    assert "loss_divergence" in found
    assert max(losses) > 2 * losses[0]
