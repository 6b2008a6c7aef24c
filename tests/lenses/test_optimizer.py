"""The Optimizer lens: state, step sizes and updates against the optimizer's own state and
parameter copies taken around ``opt.step()``, for every optimizer it knows and one it does not.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import layerscope
from layerscope.lenses import Optimizer
from layerscope.records import select
from layerscope.stats.tensors import DISTRIBUTION_SAMPLE, strided_sample
from models import batches, mlp


class SignDescent(torch.optim.Optimizer):
    """An optimizer layerscope has never heard of: w -= lr * sign(grad), no state."""

    def __init__(self, params, lr: float = 1e-2) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(
        ps, lr=1e-2, eps=1e-3
    ),  # large eps: some elements dominated
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=1e-4, amsgrad=True),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.5, centered=True),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.05),
    "unknown": lambda ps: SignDescent(ps),
}
STATE = {
    "adam": {"exp_avg": "l2", "exp_avg_sq": "mean"},
    "adamw_amsgrad": {"exp_avg": "l2", "exp_avg_sq": "mean", "max_exp_avg_sq": "mean"},
    "sgd_momentum": {"momentum_buffer": "l2"},
    "sgd_nesterov": {"momentum_buffer": "l2"},
    "rmsprop": {"square_avg": "mean", "momentum_buffer": "l2", "grad_avg": "l2"},
    "adagrad": {"sum": "mean"},
    "unknown": {},
}


def _train(kind: str, steps: int = 3):
    model = mlp()
    head, body = list(model[4].parameters()), [p for m in model[:4] for p in m.parameters()]
    opt = OPTIMIZERS[kind]([{"params": body}, {"params": head, "lr": 2e-3}])
    expected = []
    with layerscope.watch(model, opt, lenses=[Optimizer()]) as scope:
        for x, y in batches("mlp", steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt.step()
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            state = {
                n: {
                    k: (v.clone() if isinstance(v, torch.Tensor) else v)
                    for k, v in opt.state[p].items()
                }
                for n, p in model.named_parameters()
            }
            expected.append((before, after, state, [dict(g) for g in opt.param_groups]))
    records = scope.records()
    table = {(r.step, r.site, r.quantity, r.statistic): r.value for r in records}
    assert len(table) == len(records)
    assert {r.tag for r in records} == {"optimizer"}
    return model, opt, expected, table


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_updates_state_and_lr_match_torch(kind):
    model, opt, expected, table = _train(kind)
    for step, (before, after, state, groups) in enumerate(expected):
        for name in before:
            site = ":".join(name.rsplit(".", 1))  # "0.weight" -> "0:weight"
            delta = (after[name] - before[name]).double()
            assert table[(step, site, "update", "l2")] == pytest.approx(
                delta.norm().item(), rel=1e-5
            )
            ratio = delta.norm().item() / before[name].double().norm().item()
            assert table[(step, site, "update_ratio", "last")] == pytest.approx(ratio, rel=1e-5)
            for key, statistic in STATE[kind].items():
                value = state[name][key].double()
                want = value.norm() if statistic == "l2" else value.mean()
                assert table[(step, site, key, statistic)] == pytest.approx(
                    want.item(), rel=1e-5, abs=1e-12
                )
            reported = {q for (s, st, q, _) in table if s == step and st == site}
            assert reported - {"update", "update_ratio"} == set(STATE[kind]) | (
                {"step_size", "eps_dominance"} if kind.startswith("adam") else set()
            )
        for i, group in enumerate(groups):
            assert table[(step, f"param_group[{i}]", "lr", "last")] == pytest.approx(group["lr"])
    assert not opt._optimizer_step_pre_hooks
    assert not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("kind", ["adam", "adamw_amsgrad"])
def test_adam_effective_step_and_eps_dominance(kind):
    _, _, expected, table = _train(kind)
    fractions = []
    for step, (_, _, state, groups) in enumerate(expected):
        for name, st in state.items():
            site = ":".join(name.rsplit(".", 1))
            group = groups[1] if name.startswith("4.") else groups[0]
            beta2, eps, lr = group["betas"][1], group["eps"], group["lr"]
            second = st["max_exp_avg_sq"] if group["amsgrad"] else st["exp_avg_sq"]
            root = (second.double() / (1 - beta2 ** float(st["step"]))).sqrt()
            steps = lr / (root + eps)
            for statistic, want in (
                ("mean", steps.mean()),
                ("min", steps.min()),
                ("max", steps.max()),
                ("median", steps.quantile(0.5)),
            ):
                got = table[(step, site, "step_size", statistic)]
                assert got == pytest.approx(want.item(), rel=1e-4), (step, site, statistic)
            fraction = eps_reference(root, eps)
            assert table[(step, site, "eps_dominance", "fraction")] == pytest.approx(
                fraction, abs=1e-7
            )
            fractions.append(fraction)
    assert max(fractions) > 0  # the check can tell both ways
    assert min(fractions) < 1


def test_default_lenses_add_optimizer_only_with_an_optimizer():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with layerscope.watch(model, optimizer=opt) as scope:
        for x, y in batches("mlp", 2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert select(scope.records(), tag="optimizer", site="0:weight", quantity="update_ratio")
    assert "optimizer" not in {lens.tag for lens in layerscope.watch(mlp()).lenses}
    with pytest.raises(ValueError, match="optimizer=opt"):
        layerscope.watch(mlp(), lenses=[Optimizer()])
    with pytest.raises(ValueError, match="step sizes"):
        Optimizer(statistics=("l2",))
    assert math.isfinite(select(scope.records(), quantity="lr")[0].value)


def eps_reference(root: torch.Tensor, eps: float) -> float:
    """The share of sqrt(v̂) < eps among the elements with v̂ > 0."""
    had = root > 0
    return ((root < eps) & had).double().sum().item() / had.double().sum().item()


def _root_of_second_moment(state: dict, amsgrad: bool) -> torch.Tensor:
    """sqrt(v̂) at every element, in float64: the reference."""
    second = state["max_exp_avg_sq" if amsgrad else "exp_avg_sq"].double()
    return (second / (1 - 0.999 ** float(state["step"]))).sqrt()


@pytest.mark.parametrize("amsgrad", [False, True])
def test_step_size_of_a_sampled_parameter_against_the_full_tensor(amsgrad):
    # 128 x 160 = 20,480 weights: more than the sample, so mean and quantiles are read off an
    # evenly strided sample; min, max and eps_dominance must still cover every element.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(160, 128), nn.Tanh(), nn.Linear(128, 3))
    weight, bias = model[0].weight, model[0].bias
    assert weight.numel() > DISTRIBUTION_SAMPLE >= bias.numel()
    lr, eps = 1e-2, 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, eps=eps, amsgrad=amsgrad)
    lens = Optimizer(statistics=("mean", "min", "max", "median", "q95"))
    expected = []
    with layerscope.watch(model, opt, lenses=[lens]) as scope:
        for _ in range(3):
            x, y = torch.randn(64, 160), torch.randint(0, 3, (64,))
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            expected.append(
                {
                    site: _root_of_second_moment(opt.state[param], amsgrad)
                    for site, param in (("0:weight", weight), ("0:bias", bias))
                }
            )
    table = {(r.step, r.site, r.quantity, r.statistic): r.value for r in scope.records()}
    for step, roots in enumerate(expected):
        for site, root in roots.items():
            steps = lr / (root + eps)
            got = {s: table[(step, site, "step_size", s)] for s in lens.statistics}
            assert got["min"] == pytest.approx(steps.min().item(), rel=1e-6)
            assert got["max"] == pytest.approx(steps.max().item(), rel=1e-6)
            assert table[(step, site, "eps_dominance", "fraction")] == pytest.approx(
                eps_reference(root, eps), abs=1e-12
            )
            # Mean and quantiles: those of the strided sample (every element of the bias).
            sample = strided_sample(steps)
            assert got["mean"] == pytest.approx(sample.mean().item(), rel=1e-5)
            assert got["median"] == pytest.approx(sample.quantile(0.5).item(), rel=1e-5)
            assert got["q95"] == pytest.approx(sample.quantile(0.95).item(), rel=1e-5)
            # ... which lie close to the full tensor's.
            flat = steps.reshape(-1)
            assert got["mean"] == pytest.approx(flat.mean().item(), rel=0.02)
            assert flat.quantile(0.49).item() <= got["median"] <= flat.quantile(0.51).item()
    fractions = [table[(step, "0:weight", "eps_dominance", "fraction")] for step in range(3)]
    assert min(fractions) > 0  # the count can tell both ways
    assert max(fractions) < 1
