"""The default lenses end to end: every record of small trained runs, recomputed with torch.

Four small runs with fixed seeds (a ReLU MLP with a dead first layer, a transformer encoder,
and two Adam runs with planted saturation, a negative tail and a loss spike) are trained under
the default lenses while the test's own hooks capture every module output, output gradient,
parameter gradient, the parameters around each ``opt.step()`` and the optimizer's state. Each
record is then recomputed from those tensors with plain torch (numpy for histograms), and every
record must be one the test knows how to recompute; the findings must be the planted faults.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

import layerscope
from health_models import act_mlp, teacher_data
from layerscope.lenses.builtin import RELU_LIKE
from models import batches, mlp, transformer

WINDOW = 20  # the default DeadUnits / GradientDeath window
LEVELS = {"info": 1.0, "warning": 2.0, "error": 3.0}


@dataclass
class Capture:
    """What the test's own hooks saw, per step: every leaf module's output and output gradient
    (of a MultiheadAttention, whose forward never calls its out_proj, the attention output),
    the parameter gradients, the parameters before and after the optimizer step, its state."""

    step: int = 0
    relu_like: set[str] = field(default_factory=set)
    passthrough: set[str] = field(default_factory=set)  # dropout, identity: no lens reads them
    outputs: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    output_grads: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    grads: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    before: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    after: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    state: dict[int, dict[str, dict]] = field(default_factory=dict)
    groups: dict[int, list[dict]] = field(default_factory=dict)
    losses: dict[int, float] = field(default_factory=dict)

    def attach(self, model: nn.Module) -> None:
        for name, module in model.named_modules():
            attention = isinstance(module, nn.MultiheadAttention)
            if any(True for _ in module.children()) and not attention:
                continue
            if isinstance(module, RELU_LIKE):
                self.relu_like.add(name)
            if isinstance(module, (nn.Dropout, nn.Identity)):
                self.passthrough.add(name)
            module.register_forward_hook(self._forward_hook(name, attention))

    def _forward_hook(self, name: str, attention: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, out: torch.Tensor) -> None:
            if attention:  # (attn_output, attn_weights or None)
                out = out[0]
            step = self.step
            self.outputs.setdefault(step, {})[name] = out.detach().double().clone()
            if out.requires_grad:
                out.register_hook(
                    lambda g: self.output_grads.setdefault(step, {}).__setitem__(
                        name, g.detach().double().clone()
                    )
                )

        return hook

    def around_step(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Take the optimizer step, capturing what surrounds it."""
        named = dict(model.named_parameters())
        self.grads[self.step] = {n: p.grad.detach().double().clone() for n, p in named.items()}
        self.before[self.step] = {n: p.detach().double().clone() for n, p in named.items()}
        opt.step()
        self.after[self.step] = {n: p.detach().double().clone() for n, p in named.items()}
        self.state[self.step] = {
            n: {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
            for n, p in named.items()
        }
        self.groups[self.step] = [
            {k: v for k, v in g.items() if k != "params"} | {"names": _names(g, named)}
            for g in opt.param_groups
        ]


def _names(group: dict, named: dict[str, nn.Parameter]) -> list[str]:
    ids = {id(p) for p in group["params"]}
    return [n for n, p in named.items() if id(p) in ids]


@dataclass(frozen=True)
class Setup:
    model: Callable[[], nn.Module]
    data: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]]
    adam: bool
    spike_at: int | None = None  # a 30x input at this step: a loss and a gradient spike


RUNS: dict[str, Setup] = {
    # past the activity lenses' window of 20: dead-unit records and findings
    "mlp_dead_relu": Setup(lambda: mlp(bias_init=-10.0), lambda: batches("mlp", 21), False),
    "transformer": Setup(transformer, lambda: batches("transformer", 21), False),
    "tanh_adam": Setup(lambda: act_mlp(nn.Tanh, scale=6.0), lambda: teacher_data(14), True, 12),
    "gelu_adam": Setup(
        lambda: act_mlp(nn.GELU, first_bias=-3.0), lambda: teacher_data(14), True, 12
    ),
}


@functools.cache
def trained(name: str) -> tuple[layerscope.Scope, Capture]:
    """Train run `name` under the default lenses and the test's hooks (once per session)."""
    setup = RUNS[name]
    model = setup.model()
    opt = (
        torch.optim.Adam(model.parameters(), lr=0.01)
        if setup.adam
        else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    )
    capture = Capture()
    capture.attach(model)
    with layerscope.watch(model, optimizer=opt) as scope:
        for i, (x, y) in enumerate(setup.data()):
            capture.step = i
            if i == setup.spike_at:
                x = x * 30
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            capture.around_step(model, opt)
            scope.step(loss=loss)
            capture.losses[i] = loss.item()
    return scope, capture


# --- recomputation, one function per tag ------------------------------------------------------


def _active_units(x: torch.Tensor, relu_like: bool) -> torch.Tensor:
    """Per unit (last axis), whether any element was active: positive, or non-zero."""
    flags = x > 0 if relu_like else x != 0
    return flags.reshape(-1, x.shape[-1]).any(0)


def _activity(per_step: dict[int, torch.Tensor], step: int, quantity: str, statistic: str):
    """Active fraction at `step`; dead units: inactive at every step of the window ending there."""
    if quantity == "active":
        return per_step[step].double().mean()
    assert step >= WINDOW - 1  # nothing is called dead before a full window
    fired = torch.stack([per_step[s] for s in range(step - WINDOW + 1, step + 1)]).any(0)
    dead = (~fired).sum().double()
    return dead if statistic == "count" else dead / fired.numel()


def _histogram(x: torch.Tensor, edges: tuple[float, ...]) -> tuple[list[int], int, int]:
    """numpy.histogram's counts over `edges`, [lo, hi) bins; under- and overflow."""
    values = x.numpy().ravel()
    bins = np.asarray(edges)
    counts, _ = np.histogram(values, bins=bins)
    counts[-1] -= int(np.count_nonzero(values == bins[-1]))
    return counts.tolist(), int((values < bins[0]).sum()), int((values >= bins[-1]).sum())


def _parameter_name(site: str) -> str:
    module, _, kind = site.partition(":")
    return f"{module}.{kind.removesuffix('.grad')}" if module else kind.removesuffix(".grad")


def _gradients(r: layerscope.Record, c: Capture) -> torch.Tensor | float:
    grads = c.grads[r.step]
    if r.quantity == "global_l2":  # what clip_grad_norm_ clips by, over every parameter
        return torch.nn.utils.get_total_norm(list(grads.values()), norm_type=2.0)
    if r.quantity == "share":  # the module's parameters' share of the squared global norm
        prefix = "" if r.site == "model" else f"{r.site}."
        own = [g for n, g in grads.items() if n.startswith(prefix) and "." not in n[len(prefix) :]]
        return sum(g.square().sum() for g in own) / sum(g.square().sum() for g in grads.values())
    module, _, kind = r.site.partition(":")
    if kind == "output.grad":
        return c.output_grads[r.step][module].norm()
    return grads[_parameter_name(r.site)].norm()


def _adam_step_sizes(state: dict, group: dict) -> torch.Tensor:
    """lr / (sqrt(v̂) + eps), v̂ the bias-corrected second moment, in float64."""
    beta2, eps = group["betas"][1], group["eps"]
    v_hat = state["exp_avg_sq"].double() / (1 - beta2 ** float(state["step"]))
    return group["lr"] / (v_hat.sqrt() + eps)


def _optimizer(r: layerscope.Record, c: Capture) -> torch.Tensor | float:
    if r.quantity == "lr":
        return c.groups[r.step][int(r.site.removeprefix("param_group[").rstrip("]"))]["lr"]
    name = _parameter_name(r.site)
    state, before = c.state[r.step][name], c.before[r.step][name]
    (group,) = (g for g in c.groups[r.step] if name in g["names"])
    update = (c.after[r.step][name] - before).norm()
    if r.quantity == "update":
        return update
    if r.quantity == "update_ratio":  # undefined for a parameter at zero (a fresh bias)
        return update / before.norm() if before.norm() > 0 else math.nan
    if r.quantity == "step_size":
        assert r.statistic == "median"
        return _adam_step_sizes(state, group).quantile(0.5)
    if r.quantity == "eps_dominance":  # sqrt(v̂) < eps, among elements that had a gradient
        v = state["exp_avg_sq"].double()
        root = (v / (1 - group["betas"][1] ** float(state["step"]))).sqrt()
        return ((root < group["eps"]) & (v > 0)).sum() / (v > 0).sum()
    value = state[r.quantity].double()  # exp_avg, exp_avg_sq, momentum_buffer
    return {"l2": value.norm(), "mean": value.mean()}[r.statistic]


def expected(r: layerscope.Record, c: Capture) -> torch.Tensor | float | None:
    """The value of record `r` recomputed from the captured tensors; None: not recomputable."""
    module, _, kind = r.site.partition(":")
    if r.tag == "loss":
        return c.losses[r.step]
    if r.tag == "activations":
        x = c.outputs[r.step][module]
        return {"mean": x.mean(), "std": x.std(correction=0), "min": x.min(), "max": x.max()}[
            r.statistic
        ]
    if r.tag == "activity":
        relu_like = module in c.relu_like
        per_step = {s: _active_units(o[module], relu_like) for s, o in c.outputs.items()}
        return _activity(per_step, r.step, r.quantity, r.statistic)
    if r.tag == "gradient_activity":
        per_step = {s: _active_units(g[module], False) for s, g in c.output_grads.items()}
        return _activity(per_step, r.step, r.quantity, r.statistic)
    if r.tag == "gradients":
        return _gradients(r, c)
    if r.tag == "parameters":
        return {"l2": c.before[r.step][_parameter_name(r.site)].norm()}[r.quantity]
    if r.tag == "optimizer":
        return _optimizer(r, c)
    return None


def _histogram_source(r: layerscope.Record, c: Capture) -> torch.Tensor:
    module, _, kind = r.site.partition(":")
    if kind == "output":
        return c.outputs[r.step][module]
    return c.grads[r.step][_parameter_name(r.site)]


@pytest.mark.parametrize("name", list(RUNS))
def test_every_record_is_recomputed_by_torch(name):
    scope, capture = trained(name)
    records = scope.records()
    assert all(type(r.value) is float for r in records if r.value is not None)
    keys = [(r.step, r.tag, r.site, r.quantity, r.statistic) for r in records]
    assert len(keys) == len(set(keys))
    checked: dict[str, int] = {}
    for r in records:
        if r.tag == "health":
            continue  # findings: test_findings_are_the_planted_faults
        if r.histogram is not None:
            assert r.tag == "distributions"
            h = r.histogram
            counts, underflow, overflow = _histogram(_histogram_source(r, capture), h.edges)
            assert (list(h.counts), h.underflow, h.overflow) == (counts, underflow, overflow), r
        else:
            want = expected(r, capture)
            assert want is not None, f"no recomputation for {r}"
            rtol, atol = 1e-5, 1e-12  # float32 statistics against float64 recomputation
            if r.tag == "activations" and r.statistic == "mean":  # sums that cancel (LayerNorm)
                atol = 1e-6 * float(capture.outputs[r.step][r.site.partition(":")[0]].abs().mean())
            assert r.value == pytest.approx(float(want), rel=rtol, abs=atol, nan_ok=True), r
        checked[r.tag] = checked.get(r.tag, 0) + 1
    tags = {"loss", "activations", "gradients", "parameters", "activity", "gradient_activity"}
    assert tags | {"distributions", "optimizer"} <= checked.keys()
    # every step of every leaf module, output and gradient, is there
    for step, outputs in capture.outputs.items():
        sites = {r.site for r in records if r.step == step and r.tag == "activations"}
        assert sites == {f"{m}:output" for m in outputs if m not in capture.passthrough}, step


#: The faults each run was built with: (kind, severity, sites, first step).
PLANTED = {
    "mlp_dead_relu": [
        ("dead_units", "error", ("1:output",), WINDOW - 1),  # its bias of -10: never fires
        ("gradient_death", "error", ("0:output.grad",), WINDOW - 1),  # so nothing flows back
    ],
    "transformer": [],
    "tanh_adam": [  # weights x6: Tanh outputs pinned at ±1
        ("saturation", "warning", ("1:output",), 4),
        ("saturation", "warning", ("3:output",), 4),
    ],
    "gelu_adam": [  # first bias -3: GELU outputs in their flat negative tail; the 30x input
        ("negative_tail", "warning", ("1:output",), 4),
        ("gradient_spike", "warning", (), 12),
        ("loss_spike", "warning", (), 12),
    ],
}


@pytest.mark.parametrize("name", list(RUNS))
def test_findings_are_the_planted_faults(name):
    scope, capture = trained(name)
    findings = scope.findings()
    got = [(f.kind, f.severity, tuple(f.sites), f.step) for f in findings]
    assert got == PLANTED[name]
    # one health record per cause: a finding another explains (no gradient behind a dead
    # layer) is told in that one's message
    health = [(r.step, r.statistic, r.site, r.value) for r in scope.records() if r.tag == "health"]
    assert set(health) <= {(f.step, f.kind, f.site, LEVELS[f.severity]) for f in findings}
    assert bool(health) == bool(findings)
    for f in findings:  # what the finding says is what the recomputed data shows
        if f.kind in ("dead_units", "gradient_death"):
            module = f.site.partition(":")[0]
            source = capture.outputs if f.kind == "dead_units" else capture.output_grads
            fired = torch.stack(
                [_active_units(source[s][module], f.kind == "dead_units") for s in range(WINDOW)]
            ).any(0)
            assert not fired.any()
        elif f.kind == "loss_spike":
            before = sorted(capture.losses[s] for s in range(f.step))
            assert capture.losses[f.step] > 10 * before[len(before) // 2]
        elif f.kind == "gradient_spike":
            norms = [
                float(torch.nn.utils.get_total_norm(list(capture.grads[s].values())))
                for s in range(f.step + 1)
            ]
            assert norms[f.step] > 10 * sorted(norms[: f.step])[f.step // 2]
    assert math.isfinite(sum(capture.losses.values()))
