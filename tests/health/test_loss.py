"""Loss spikes, divergence and plateaus, from the Loss lens's records."""

from torch import nn

from health_models import act_mlp, kinds, run, teacher_data
from layerscope import default_lenses as default
from layerscope.health import Health


def test_one_poisoned_batch_is_a_spike_at_its_step():
    def poison(step, x):
        return -30 * x if step == 24 else x  # confidently wrong: the teacher flips

    scope, losses = run(act_mlp(nn.ReLU), teacher_data(30), before_step=poison)
    spikes = [f for f in scope.findings() if f.kind == "loss_spike"]
    assert [(f.step, f.site) for f in spikes] == [(24, "")]
    assert spikes[0].evidence["loss"] == losses[24]


def test_learning_rate_times_hundred_diverges():
    scope, losses = run(act_mlp(nn.ReLU), teacher_data(25), lr=5.0)
    divergence = [f for f in scope.findings() if f.kind == "loss_divergence"]
    assert len(divergence) == 1
    assert divergence[0].evidence["first_loss"] == losses[0]
    assert divergence[0].severity == "error"


def test_a_frozen_learning_rate_plateaus():
    lenses = [*default()[:-1], Health(loss={"plateau_window": 10})]
    scope, _ = run(act_mlp(nn.ReLU), teacher_data(30), lr=0.0, lenses=lenses)
    plateaus = [f for f in scope.findings() if f.kind == "loss_plateau"]
    assert [f.step for f in plateaus] == [19]
    assert plateaus[0].severity == "info"


def test_learning_does_not_plateau_with_the_same_window():
    lenses = [*default()[:-1], Health(loss={"plateau_window": 10})]
    scope, _ = run(act_mlp(nn.ReLU), teacher_data(30), lenses=lenses)
    assert kinds(scope) == []
