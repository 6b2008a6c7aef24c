"""NaN origin: the first site, forward then backward, that held a non-finite value."""

import torch
from torch import nn

import layerscope
from health_models import kinds, run, teacher_data
from layerscope.health import NonFinite
from layerscope.lenses import Activations


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


def test_a_nan_put_into_one_weight_gradient_names_that_gradient():
    """A parameter gradient the default lenses read for its norm alone still counts its NaN."""
    model = faulty_mlp(nn.Linear(32, 32))
    calls = []

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) < 4:  # the fourth step's gradient: step 3
            return grad
        return grad.masked_fill(torch.rand_like(grad) < 0.01, float("nan"))

    model[4].weight.register_hook(poison)
    scope, _ = run(model, teacher_data(6))
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("4:weight.grad",), 3)]


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


def test_a_site_summarized_on_the_step_is_read_once():
    # Step 0 summarizes every output (every=10): the finiteness search reads those summaries
    # and adds no hook of its own; step 1 summarizes none, and the search hooks every module.
    model = faulty_mlp(nn.Linear(32, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    hooks = []
    with layerscope.watch(model, opt, every=10) as scope:
        for x, y in teacher_data(2):
            hooks.append([len(m._forward_hooks) for m in model])
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            scope.step()
    assert hooks == [[1] * 7, [1] * 7]
    assert {r.step for r in scope.records()} == {0}


def test_the_origin_is_found_among_summarized_and_counted_sites_alike():
    # Only layer 4's output is summarized: the NaN born at layer 2 (counted) comes first...
    lenses = [Activations(names=["4"]), NonFinite()]
    scope, _ = run(faulty_mlp(LogLinear(32, 32, armed_at=3)), teacher_data(5), lenses=lenses)
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("2:output",), 3)]
    # ... and a NaN born at layer 4 (summarized) before layer 6's (counted)
    model = faulty_mlp(nn.Linear(32, 32))
    model[4] = LogLinear(32, 16, armed_at=3)
    scope, _ = run(model, teacher_data(5), lenses=lenses)
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("4:output",), 3)]


class Huge(nn.Module):
    """Outputs 3e38 everywhere (a float32 sum of it overflows, every element finite)."""

    def forward(self, x):
        return x * 0 + 3e38


class Zero(nn.Module):
    def forward(self, x):
        return x * 0


def test_a_finite_tensor_whose_sum_overflows_is_no_alarm():
    model = faulty_mlp(nn.Linear(32, 32))
    model[3] = nn.Sequential(Huge(), Zero())
    scope, _ = run(model, teacher_data(3), every=10)
    assert [f for f in scope.findings() if f.kind == "nan_origin"] == []
