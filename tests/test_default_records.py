"""The default lenses end to end: every record of small trained runs, against torch and a snapshot.

Two checks guard the records the default lens set emits (and the findings the Health lens draws
from them) on four small runs with fixed seeds:

* the numbers a torch forward/backward gives directly (output statistics and norms, gradient
  norms, the loss, active units) are recomputed from tensors captured by the test's own hooks;
* the full sequence of records (step, tag, site, quantity, statistic, value, in order) and of
  findings is compared with ``data/default_records.json``, written by an earlier version: a
  change that speeds up turning windows into records must not change a single one.

Regenerate the snapshot (only when records change on purpose) with
``python tests/test_default_records.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import layerscope
from health_models import act_mlp, run, teacher_data
from layerscope.lenses.builtin import RELU_LIKE
from models import batches, mlp, train, transformer

SNAPSHOT = Path(__file__).parent / "data" / "default_records.json"
STEPS = 21  # past the activity lenses' window of 20: dead-unit records and findings


class Capture:
    """Every leaf module's output and output gradient, per step, seen by hooks of the test;
    of a MultiheadAttention (whose forward never calls its out_proj), the attention output."""

    def __init__(self, model: nn.Module) -> None:
        self.step = 0
        self.outputs: dict[int, dict[str, torch.Tensor]] = {}
        self.output_grads: dict[int, dict[str, torch.Tensor]] = {}
        self.param_grads: dict[int, dict[str, torch.Tensor]] = {}
        self.losses: dict[int, float] = {}
        self.relu_like: set[str] = set()
        for name, module in model.named_modules():
            attention = isinstance(module, nn.MultiheadAttention)
            if any(True for _ in module.children()) and not attention:
                continue
            if isinstance(module, RELU_LIKE):
                self.relu_like.add(name)
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

    def after_backward(self, step: int, model: nn.Module) -> None:
        self.param_grads[step] = {
            n: p.grad.detach().double().clone() for n, p in model.named_parameters()
        }
        self.step = step + 1


def _train_with_capture(model: nn.Module, kind: str) -> tuple[layerscope.Scope, Capture]:
    capture = Capture(model)
    losses, scope = train(
        model,
        batches(kind, STEPS),
        lr=0.01,
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o),
        after_backward=capture.after_backward,
    )
    capture.losses = dict(enumerate(losses))
    return scope, capture  # type: ignore[return-value]


def _train_mlp_with_a_dead_relu() -> tuple[layerscope.Scope, Capture]:
    return _train_with_capture(mlp(bias_init=-10.0), "mlp")


def _train_transformer() -> tuple[layerscope.Scope, Capture]:
    return _train_with_capture(transformer(), "transformer")


def _train_with_adam(act: type[nn.Module], scale: float, first_bias: float | None):
    # A 30x input at step 12 makes a loss and a gradient spike.
    scope, _ = run(
        act_mlp(act, scale=scale, first_bias=first_bias),
        teacher_data(14),
        lr=0.01,
        adam=True,
        before_step=lambda i, x: x * 30 if i == 12 else x,
    )
    return scope


#: Runs of the snapshot: name -> closed scope.
RUNS: dict[str, Callable[[], layerscope.Scope]] = {
    "mlp_dead_relu": lambda: _train_mlp_with_a_dead_relu()[0],
    "transformer": lambda: _train_transformer()[0],
    "tanh_adam": lambda: _train_with_adam(nn.Tanh, 6.0, None),
    "gelu_adam": lambda: _train_with_adam(nn.GELU, 1.0, -3.0),
}


def _rows(scope: layerscope.Scope) -> dict[str, list]:
    """Records and findings as JSON-ready rows; a histogram record keeps its counts."""
    records = [
        [
            r.step,
            r.tag,
            r.site,
            r.quantity,
            r.statistic,
            r.value if r.value is None else float(f"{r.value:.8g}"),
            None if r.histogram is None else list(r.histogram.counts),
        ]
        for r in scope.records()
    ]
    findings = [
        [f.kind, f.severity, f.step, list(f.sites), f.last_step, f.closed_step, f.message]
        for f in scope.findings()
    ]
    return {"records": records, "findings": findings}


def _compact(rows: dict[str, list]) -> dict[str, list]:
    """The rows with each (tag, site, quantity, statistic) stored once: a file a tenth the size."""
    names: dict[tuple, int] = {}
    records = [
        [step, names.setdefault((tag, site, quantity, statistic), len(names)), value, counts]
        for step, tag, site, quantity, statistic, value, counts in rows["records"]
    ]
    return {"names": list(names), "records": records, "findings": rows["findings"]}


def _expand(compact: dict[str, list]) -> dict[str, list]:
    names = compact["names"]
    records = [[step, *names[i], *rest] for step, i, *rest in compact["records"]]
    return {"records": records, "findings": compact["findings"]}


#: Adam's first step sizes are lr / |g|: tiny gradients that are sums of cancelling terms carry
#: the relative error of the CPU's matmul kernels (2e-4 between AVX2 and AVX-512 machines).
ILL_CONDITIONED = {"step_size": 2e-3}


def _same_value(got: float | None, expected: float | None, quantity: str = "") -> bool:
    if got is None or expected is None:
        return got is expected
    if math.isnan(expected):
        return math.isnan(got)
    # Loose enough for another CPU's float kernels; a changed record differs far more.
    return got == pytest.approx(expected, rel=ILL_CONDITIONED.get(quantity, 1e-4), abs=1e-6)


def _same_counts(got: list[int] | None, expected: list[int] | None) -> bool:
    """Histogram counts equal up to elements on a bucket edge: another CPU's float kernels may
    round a value lying on an edge to the neighbouring bucket, so the running totals may differ
    by one element per edge; a changed histogram differs far more."""
    if got is None or expected is None:
        return got is expected
    if len(got) != len(expected) or sum(got) != sum(expected):
        return False
    running_got = running_expected = 0
    for a, b in zip(got, expected, strict=True):
        running_got, running_expected = running_got + a, running_expected + b
        if abs(running_got - running_expected) > 1:
            return False
    return True


@pytest.mark.parametrize("name", list(RUNS))
def test_records_and_findings_match_the_snapshot(name):
    expected = _expand(json.loads(SNAPSHOT.read_text())[name])
    scope = RUNS[name]()
    assert all(type(r.value) is float for r in scope.records() if r.value is not None)
    got = _rows(scope)
    assert [row[:5] for row in got["records"]] == [row[:5] for row in expected["records"]]
    for row, want in zip(got["records"], expected["records"], strict=True):
        assert _same_value(row[5], want[5], row[3]), (row, want)
        assert _same_counts(row[6], want[6]), (row, want)
    assert got["findings"] == expected["findings"]


def _active_units(x: torch.Tensor, relu_like: bool) -> torch.Tensor:
    """Per unit (last axis), whether any element was active: positive, or non-zero."""
    flags = x > 0 if relu_like else x != 0
    return flags.reshape(-1, x.shape[-1]).any(0)


def _of_output(x: torch.Tensor, relu_like: bool, r: layerscope.Record) -> torch.Tensor | None:
    """What a record of a module output should hold, computed by torch; None: not checked."""
    n = x.numel()
    if r.tag == "activations":
        return {
            "mean": x.mean(),
            "std": x.std(correction=0),
            "min": x.min(),
            "max": x.max(),
            "zero_fraction": (x == 0).sum() / n,
            "nonfinite_fraction": (~x.isfinite()).sum() / n,
        }[r.statistic]
    if r.tag == "output_norms":
        return {"l2": x.norm(), "rms": x.norm() / math.sqrt(n)}[r.quantity]
    if r.tag == "activity" and r.quantity == "active":
        return _active_units(x, relu_like).double().mean()
    return None


@pytest.mark.parametrize("trainer", [_train_mlp_with_a_dead_relu, _train_transformer])
def test_default_records_match_torch(trainer):
    scope, capture = trainer()
    checked = 0
    for r in scope.records():
        module, _, kind = r.site.partition(":")
        if r.tag == "loss":
            expected = capture.losses[r.step]
        elif kind == "output":
            expected = _of_output(capture.outputs[r.step][module], module in capture.relu_like, r)
        elif r.tag == "gradient_activity" and r.quantity == "active":
            expected = _active_units(capture.output_grads[r.step][module], False).double().mean()
        elif r.tag == "gradients" and kind == "output.grad":
            expected = capture.output_grads[r.step][module].norm()
        elif r.tag == "gradients" and kind.endswith(".grad"):  # weights, biases, in_proj_weight
            expected = capture.param_grads[r.step][f"{module}.{kind.removesuffix('.grad')}"].norm()
        elif r.tag == "gradients" and r.quantity == "global_l2":
            # over every parameter: MultiheadAttention's own input projection too
            grads = capture.param_grads[r.step].values()
            expected = math.sqrt(sum(g.norm() ** 2 for g in grads))
        else:
            continue
        if expected is None:
            continue
        assert r.value == pytest.approx(float(expected), rel=1e-5, abs=1e-6), r
        checked += 1
    assert checked > 800  # the default lenses record ~900 of these in the dead-ReLU run


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(
        json.dumps({name: _compact(_rows(make())) for name, make in RUNS.items()}) + "\n"
    )
