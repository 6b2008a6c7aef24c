"""Attention gatherer and lens: per-head numbers against the weights MultiheadAttention returns."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

import layerscope
from layerscope.gatherers.attention import recompute_attention
from layerscope.lenses import Attention
from layerscope.records import select
from models import SelfAttention, head_outputs

QUANTITIES = ("entropy", "entropy_ratio", "max_weight", "first_key_mass", "diagonal_mass")


class Encoder(nn.Module):
    """A causal Transformer encoder with padded keys, trained as a classifier."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        return self.head(self.enc(x, mask=causal, src_key_padding_mask=pad).mean(1))


def _data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    pad = torch.zeros(8, 6, dtype=torch.bool)
    pad[:3, 4:] = True  # three sequences of length 4
    return [
        (torch.randn(8, 6, 16, generator=g), pad, torch.randint(0, 3, (8,), generator=g))
        for _ in range(steps)
    ]


def _expected(weights: torch.Tensor, head_out: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Per-head numbers in float64 numpy, from (N, H, L, S) weights."""
    w = weights.double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(w > 0, w * np.log(w), 0.0)
    entropy = -plogp.sum(-1).mean(axis=(0, 2))
    diag = np.stack([w[:, :, i, i] for i in range(min(w.shape[2], w.shape[3]))], -1)
    out = {
        "entropy": entropy,
        "entropy_ratio": entropy / math.log(w.shape[-1]),
        "max_weight": w.max(-1).mean(axis=(0, 2)),
        "first_key_mass": w[..., 0].mean(axis=(0, 2)),
        "diagonal_mass": diag.mean(axis=(0, 2)),
    }
    if head_out is not None:
        out["output_l2"] = np.sqrt((head_out.double().numpy() ** 2).sum(axis=(0, 2, 3)))
    return out


def _value(records, **fields) -> float:
    found = select(records, **fields)
    assert len(found) == 1, (fields, found)
    return found[0].value


def test_transformer_heads_match_weights_from_need_weights_true():
    model = Encoder()
    data = _data(3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    expected: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    step = {"i": 0}

    def capture(name: str):  # an independent forward asking for the weights
        def hook(mha, args, kwargs):
            with torch.no_grad():
                _, w = mha.forward(
                    *args, **{**kwargs, "need_weights": True, "average_attn_weights": False}
                )
                expected[(step["i"], name)] = _expected(w, head_outputs(mha, args[0], w))

        return hook

    handles = [
        model.enc.layers[i].self_attn.register_forward_pre_hook(
            capture(f"enc.layers.{i}.self_attn"), with_kwargs=True
        )
        for i in range(2)
    ]
    with layerscope.watch(
        model, opt, lenses=[Attention(modules=nn.TransformerEncoderLayer)]
    ) as scope:
        for i, (x, pad, y) in enumerate(data):
            step["i"] = i
            opt.zero_grad()
            nn.functional.cross_entropy(model(x, pad), y).backward()
            opt.step()
    for handle in handles:
        handle.remove()
    records = scope.records()
    table = {(r.step, r.site, r.quantity, r.statistic): r.value for r in records}
    assert len(table) == len(records)
    assert {r.tag for r in records} == {"attention"}
    assert len(expected) == 6
    for (i, name), numbers in expected.items():
        for quantity, per_head in numbers.items():
            for h, value in enumerate(per_head):
                got = table[(i, f"{name}:attention.head{h}", quantity, "mean")]
                assert got == pytest.approx(value, rel=1e-4, abs=1e-6), (i, name, quantity, h)
        assert table[(i, f"{name}:attention", "dead_heads", "count")] == 0
    ratios = [r.value for r in select(records, quantity="entropy_ratio")]
    assert all(0 < r < 1 for r in ratios)  # causal and padded: never uniform over all 6 keys


def test_need_weights_false_outputs_and_training_are_bitwise_unchanged():
    def run(observe: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        torch.manual_seed(0)
        mha = nn.MultiheadAttention(16, 4, dropout=0.1, batch_first=True)
        opt = torch.optim.SGD(mha.parameters(), lr=0.1)
        scope = layerscope.watch(mha, opt, lenses=[Attention()]) if observe else None
        g = torch.Generator().manual_seed(5)
        outs = []
        for _ in range(3):
            x = torch.randn(4, 7, 16, generator=g)
            out, weights = mha(x, x, x, need_weights=False)
            assert weights is None
            outs.append(out.detach().clone())
            opt.zero_grad()
            out.pow(2).mean().backward()
            opt.step()
        if scope is not None:
            scope.close()
            assert len(select(scope.records(), quantity="entropy")) == 3 * 4
        return outs, [p.detach().clone() for p in mha.parameters()]

    (plain_out, plain_params), (seen_out, seen_params) = run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(plain_out, seen_out, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(plain_params, seen_params, strict=True))


class Returns(nn.Module):
    """A module returning (output, per-head weights), as many attention implementations do."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mha(x, x, x, need_weights=True, average_attn_weights=False)


def test_output_path_reads_the_named_leaf():
    torch.manual_seed(0)
    model = nn.Sequential(Returns())
    x = torch.randn(3, 5, 8)
    with layerscope.watch(model, lenses=[Attention(names="0", output_path="[1]")]) as scope:
        out, weights = model(x)
        out.sum().backward()
        scope.step()
    expected = _expected(weights.detach(), None)
    records = scope.records()
    for quantity in QUANTITIES:
        for h in range(2):
            got = _value(records, site=f"0:attention.head{h}", quantity=quantity)
            assert got == pytest.approx(expected[quantity][h], rel=1e-5)
    assert not select(records, quantity="output_l2")  # no head outputs without the module


def test_unreadable_module_and_hooks_removed():
    with pytest.raises(ValueError, match="output_path"):
        layerscope.watch(nn.Sequential(nn.Linear(2, 2)), lenses=[Attention(modules=nn.Linear)])
    with pytest.raises(ValueError, match="output_path must be a string"):
        Attention(output_path=1)
    model = Encoder()
    scope = layerscope.watch(model, lenses=[Attention(modules=nn.TransformerEncoderLayer)])
    assert any(m._forward_hooks_with_kwargs for m in model.modules())
    scope.close()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("options", "batched", "mask_kind"),
    [
        ({}, True, "bool3d"),
        ({"add_bias_kv": True, "add_zero_attn": True}, True, "float2d"),
        ({"kdim": 5, "vdim": 7, "bias": False}, True, None),
        ({"batch_first": True}, False, "bool2d"),
    ],
)
def test_recomputed_weights_equal_need_weights_true(options, batched, mask_kind):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, **options)
    n, length, keys = 3, 4, 6
    shape = (n,) if batched else ()
    first = options.get("batch_first") and batched

    query = torch.randn(length, *shape, 8) if not first else torch.randn(*shape, length, 8)
    key = torch.randn(keys, *shape, options.get("kdim", 8))
    value = torch.randn(keys, *shape, options.get("vdim", 8))
    if not batched:
        query, key, value = torch.randn(length, 8), torch.randn(keys, 8), torch.randn(keys, 8)
    mask = {
        None: None,
        "bool3d": torch.rand(n * 2, length, keys) < 0.3,
        "float2d": torch.randn(length, keys),
        "bool2d": torch.ones(length, keys, dtype=torch.bool).triu(1),
    }[mask_kind]
    kpm = torch.zeros(n, keys, dtype=torch.bool) if batched else None
    if kpm is not None:
        kpm[0, -2:] = True
        if mask is not None and mask.is_floating_point():  # torch wants both masks alike
            kpm = torch.zeros(n, keys).masked_fill(kpm, -math.inf)
    kwargs = {"key_padding_mask": kpm, "attn_mask": mask}
    _, want = mha.forward(
        query, key, value, need_weights=True, average_attn_weights=False, **kwargs
    )
    with torch.no_grad():
        got, _ = recompute_attention(mha, (query, key, value), kwargs)
    torch.testing.assert_close(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


def test_missing_output_leaf_is_noted_once_and_skipped(caplog):
    caplog.set_level(logging.INFO, logger="layerscope")
    model = nn.Sequential(Returns())
    with layerscope.watch(model, lenses=[Attention(names="0", output_path="[5]")]) as scope:
        for _ in range(2):
            model(torch.randn(2, 3, 8))[0].sum().backward()
            scope.step()
    assert not scope.records()
    assert sum("output_path='[5]'" in r.message for r in caplog.records) == 1


def weights_of(model: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """(N, H, L, S) weights from MultiheadAttention itself."""
    with torch.no_grad():
        return model.attn(x, x, x, need_weights=True, average_attn_weights=False)[1]


def test_calls_of_different_batch_sizes_weigh_as_their_items():
    # Two micro-batches of 1 and 7 sequences in one step: the step's numbers are those of all
    # 8 sequences together, not the equal-weight mean of the two calls' means; the heads' output
    # norms are the norms over all 8, not a mean of the two calls' norms.
    model = SelfAttention()
    g = torch.Generator().manual_seed(4)
    calls = [torch.randn(1, 5, 8, generator=g), torch.randn(7, 5, 8, generator=g)]
    with layerscope.watch(model, lenses=[Attention()]) as scope:
        for x in calls:
            model(x).square().mean().backward()
        scope.step()
    table = {(r.site, r.quantity): r.value for r in scope.records()}
    weights = [weights_of(model, x) for x in calls]
    with torch.no_grad():
        outputs = [head_outputs(model.attn, x, w) for x, w in zip(calls, weights, strict=True)]
    want = _expected(torch.cat(weights), torch.cat(outputs))
    for quantity in (*QUANTITIES, "output_l2"):
        for h, value in enumerate(want[quantity]):
            got = table[(f"attn:attention.head{h}", quantity)]
            assert got == pytest.approx(value, rel=1e-5), (quantity, h)
