"""The output of nn.MultiheadAttention: read at the attention module, whose forward never calls
its out_proj, and checked against torch on blocks that call it directly and in a Transformer."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import Record, select
from layerscope.units import unit_axes
from models import batches, train, transformer

STEPS = 4


class DirectAttention(nn.Module):
    """A block that calls nn.MultiheadAttention itself, with need_weights at its default (True)."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.batch_first = batch_first
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (batch, length, 16)
        if not self.batch_first:
            h = h.transpose(0, 1)
        out, weights = self.attn(h, h, h)
        assert weights.shape == (x.shape[0], x.shape[1], x.shape[1])  # averaged over heads
        if not self.batch_first:
            out = out.transpose(0, 1)
        return self.head(torch.relu(out).mean(1))


def _direct_data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(8, 5, 6, generator=g), torch.randint(0, 3, (8,), generator=g))
        for _ in range(steps)
    ]


#: name -> (model, data, names of its attention modules)
MODELS: dict[str, Callable[[], tuple[nn.Module, list, list[str]]]] = {
    "direct_batch_first": lambda: (DirectAttention(True), _direct_data(STEPS), ["attn"]),
    "direct_sequence_first": lambda: (DirectAttention(False), _direct_data(STEPS), ["attn"]),
    "transformer_encoder": lambda: (
        transformer(),
        batches("transformer", STEPS),
        ["0.layers.0.self_attn", "0.layers.1.self_attn"],
    ),
}


class AttentionCapture:
    """Each attention module's output [0] and its gradient, per step, seen by the test's hooks."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.step = 0
        self.outputs: dict[tuple[int, str], torch.Tensor] = {}
        self.grads: dict[tuple[int, str], torch.Tensor] = {}
        self.param_grads: dict[int, dict[str, torch.Tensor]] = {}
        modules = dict(model.named_modules())
        for name in names:
            modules[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, out: tuple[torch.Tensor, ...]) -> None:
            key = (self.step, name)
            self.outputs[key] = out[0].detach().double().clone()
            out[0].register_hook(lambda g: self.grads.__setitem__(key, g.detach().double().clone()))

        return hook

    def after_backward(self, step: int, model: nn.Module) -> None:
        self.param_grads[step] = {
            n: p.grad.detach().double().clone() for n, p in model.named_parameters()
        }
        self.step = step + 1


def _value(records: list[Record], **fields: object) -> float:
    found = select(records, **fields)
    assert len(found) == 1, (fields, found)
    return found[0].value


def _close(got: float, expected: torch.Tensor | float) -> bool:
    return got == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", list(MODELS))
def test_default_lenses_read_the_attention_output(kind):
    model, data, names = MODELS[kind]()
    capture = AttentionCapture(model, names)
    _, scope = train(
        model,
        data,
        lr=0.01,
        scope_factory=lambda m, o: layerscope.watch(m, optimizer=o),
        after_backward=capture.after_backward,
    )
    records = scope.records()
    for step in range(STEPS):
        for name in names:
            x = capture.outputs[step, name]
            grad = capture.grads[step, name]
            site, at = f"{name}:output", {"step": step, "site": f"{name}:output"}
            assert _close(_value(records, tag="activations", statistic="mean", **at), x.mean())
            std = x.std(correction=0)
            assert _close(_value(records, tag="activations", statistic="std", **at), std)
            assert _close(_value(records, tag="activations", statistic="max", **at), x.max())
            active = (x != 0).reshape(-1, x.shape[-1]).any(0).double().mean()  # embedding axis
            assert _close(_value(records, tag="activity", quantity="active", **at), active)
            grad_l2 = _value(records, step=step, tag="gradients", site=f"{site}.grad")
            assert _close(grad_l2, grad.norm())
            # out_proj's parameters are read at out_proj
            for pname in ("weight", "bias"):
                got = _value(
                    records, step=step, tag="gradients", site=f"{name}.out_proj:{pname}.grad"
                )
                assert _close(got, capture.param_grads[step][f"{name}.out_proj.{pname}"].norm())
        total = math.sqrt(sum(g.norm() ** 2 for g in capture.param_grads[step].values()))
        assert _close(_value(records, step=step, tag="gradients", quantity="global_l2"), total)
    # no site for the weights, nor for out_proj's output
    unseen = tuple(p for name in names for p in (f"{name}:output[", f"{name}.out_proj:output"))
    assert not [r.site for r in records if r.site.startswith(unseen)]


def test_gradient_norms_read_each_parameter_once():
    """Each parameter's gradient norm at one site (out_proj's at out_proj); the shares add up."""
    model = DirectAttention(True)
    _, scope = train(
        model, _direct_data(2), scope_factory=lambda m, o: layerscope.watch(m, optimizer=o)
    )
    records = select(scope.records(), step=0, tag="gradients")
    sites = [r.site for r in records if r.site.endswith(".grad") and ":output" not in r.site]
    expected = [f"{m}:{p}.grad" for m, p in (n.rsplit(".", 1) for n, _ in model.named_parameters())]
    assert sorted(sites) == sorted(expected)
    assert sum(r.value for r in records if r.quantity == "share") == pytest.approx(1.0, rel=1e-6)


def test_the_attention_lens_and_the_output_lenses_do_not_disturb_each_other():
    def run(chosen: list[lenses.Lens] | None) -> tuple[list[float], list[Record]]:
        model = DirectAttention(True)
        if chosen is None:
            losses, _ = train(model, _direct_data(STEPS))
            return losses, []
        losses, scope = train(
            model,
            _direct_data(STEPS),
            scope_factory=lambda m, o: layerscope.watch(m, optimizer=o, lenses=chosen),
        )
        return losses, scope.records()

    plain, _ = run(None)
    outputs_losses, outputs = run(layerscope.default_lenses(optimizer=True))
    heads_losses, heads = run([lenses.Attention()])
    both_losses, both = run([*layerscope.default_lenses(optimizer=True), lenses.Attention()])
    assert plain == outputs_losses == heads_losses == both_losses  # bitwise
    assert any(r.site == "attn:attention.head0" for r in heads)
    assert [r for r in both if r.tag == "attention"] == heads
    assert [r for r in both if r.site.startswith("attn:output")] == [
        r for r in outputs if r.site.startswith("attn:output")
    ]
    assert {r.site for r in both if r.site.startswith("attn:")} >= {
        "attn:output",
        "attn:output.grad",
        "attn:attention",
    }


def test_an_attention_module_selected_by_type_gives_its_output_alone():
    model = DirectAttention(True)
    _, scope = train(
        model,
        _direct_data(1),
        scope_factory=lambda m, o: layerscope.watch(
            m, lenses=[lenses.Activations(modules=nn.MultiheadAttention)]
        ),
    )
    assert {r.site for r in scope.records()} == {"attn:output"}


def test_selection_reads_the_attention_module_and_the_parameters_of_out_proj():
    pairs = list(DirectAttention(True).named_modules())
    assert list(lenses.Activations().kinds_by_module(pairs)) == ["embed", "attn", "head"]
    assert list(lenses.DeadUnits().kinds_by_module(pairs)) == ["embed", "attn", "head"]
    kinds = lenses.GradientNorms().kinds_by_module(pairs)
    assert kinds["attn"] == ("weight.grad", "bias.grad", "output.grad")
    assert kinds["attn.out_proj"] == ("weight.grad", "bias.grad")
    assert "attn.out_proj" in lenses.Parameters().kinds_by_module(pairs)


def test_selecting_only_a_never_called_module_is_an_error():
    model = DirectAttention(True)
    with pytest.raises(ValueError, match=r"attn\.out_proj.*never called|never called.*out_proj"):
        layerscope.watch(model, lenses=[lenses.Activations(names="attn.out_proj")])
    # its parameters are there to read
    with layerscope.watch(model, lenses=[lenses.GradientNorms(names="attn.out_proj")]):
        pass


def test_the_units_of_attention_are_its_embedding_features():
    conv, attention = nn.Conv1d(3, 16, 1), nn.MultiheadAttention(16, 2)
    axes = unit_axes({"conv": conv, "attn": attention, "attn.out_proj": attention.out_proj})
    assert axes["conv"] == (1, False)
    assert axes["attn"] == (-1, True)
