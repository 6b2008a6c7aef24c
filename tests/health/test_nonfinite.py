"""NaN origin: the first site, forward then backward, that held a non-finite value."""

import torch
from torch import nn

from health_models import kinds, run, teacher_data


class LogLinear(nn.Linear):
    """A Linear that, from the given forward call on, returns the log of its output."""

    def __init__(self, *args, armed_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.armed_at = armed_at
        self.calls = 0

    def forward(self, x):
        y = super().forward(x)
        self.calls += 1
        return torch.log(y) if self.calls - 1 >= self.armed_at else y


class SqrtReLU(nn.Module):
    """sqrt(max(x, 0)): finite forward, but its gradient at 0 is inf * 0 = NaN."""

    def forward(self, x):
        return torch.sqrt(x * (x > 0))  # the mask multiplies: inf * 0 = NaN


def faulty_mlp(layer3: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32),
        nn.ReLU(),
        layer3,
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.Tanh(),
        nn.Linear(16, 3),
    )


def test_log_of_negative_in_layer_three_names_that_layer_and_step():
    scope, losses = run(faulty_mlp(LogLinear(32, 32, armed_at=6)), teacher_data(10))
    assert all(map(torch.isfinite, map(torch.tensor, losses[:6])))
    assert torch.isnan(torch.tensor(losses[6]))
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert len(origins) == 1  # NaN spreads into every weight after the update: still one
    assert origins[0].sites == ("2:output",)
    assert origins[0].step == 6
    assert origins[0].severity == "error"
    assert "2:output" in origins[0].message
    assert "step 6" in origins[0].message
    assert origins[0].open
    assert origins[0].last_step == 9
    records = [r for r in scope.records() if r.statistic == "nan_origin"]
    assert [(r.step, r.site, r.value) for r in records] == [(6, "2:output", 3.0)]


def test_a_nan_born_in_the_backward_pass_names_the_first_gradient():
    model = faulty_mlp(nn.Linear(32, 32))
    model[3] = SqrtReLU()
    scope, _ = run(model, teacher_data(3))
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [f.sites for f in origins] == [("2:output.grad",)]  # the input of the sqrt
    assert origins[0].step == 0
    assert "backward" in origins[0].message


def test_no_nan_no_finding():
    scope, _ = run(faulty_mlp(LogLinear(32, 32, armed_at=99)), teacher_data(8))
    assert kinds(scope) == []


def test_with_every_10_the_origin_is_the_first_bad_step_and_site():
    # Step 13 is one no other lens observes (every=10): the NaN has spread into every weight
    # by step 20, where the old check saw it first and named the first layer.
    scope, losses = run(faulty_mlp(LogLinear(32, 32, armed_at=13)), teacher_data(22), every=10)
    assert torch.isnan(torch.tensor(losses[13]))
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("2:output",), 13)]
    assert "step 13" in origins[0].message


class ArmedSqrtReLU(SqrtReLU):
    """A ReLU until the given call, then :class:`SqrtReLU` (NaN gradients)."""

    def __init__(self, armed_at: int):
        super().__init__()
        self.armed_at = armed_at
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x) if self.calls - 1 >= self.armed_at else torch.relu(x)


def test_with_every_10_a_nan_born_in_the_backward_pass_is_found_on_its_step():
    model = faulty_mlp(nn.Linear(32, 32))
    model[3] = ArmedSqrtReLU(armed_at=7)
    scope, _ = run(model, teacher_data(12), every=10)
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("2:output.grad",), 7)]
