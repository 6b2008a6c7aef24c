"""False alarms are bugs: healthy small models trained with sane settings produce no finding."""

import pytest
from torch import nn

from health_models import act_mlp, kinds, run, teacher_data
from models import cnn, transformer

MODELS = {
    "relu-mlp": (lambda: act_mlp(nn.ReLU), None),
    "tanh-mlp": (lambda: act_mlp(nn.Tanh), None),
    "sigmoid-mlp": (lambda: act_mlp(nn.Sigmoid), None),
    "gelu-mlp": (lambda: act_mlp(nn.GELU, depth=3), None),
    "cnn": (cnn, (1, 6, 6)),
    "transformer": (transformer, (5, 16)),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("lr", "adam"), [(0.05, False), (1e-3, True)])
def test_healthy_training_stays_silent(name, lr, adam):
    make, shape = MODELS[name]
    scope, losses = run(make(), teacher_data(32, shape=shape), lr=lr, adam=adam)
    assert kinds(scope) == []
    assert not [r for r in scope.records() if r.tag == "health"]
    assert len(losses) == 32  # every step observed, the early ones included


def test_long_healthy_run_stays_silent():
    scope, losses = run(act_mlp(nn.ReLU), teacher_data(120))
    assert losses[-1] < 0.5 * losses[0]  # it learns, so the loss is not on a plateau
    assert kinds(scope) == []
