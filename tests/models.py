"""Small real models and a training loop shared by the gatherer, lens and scope tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def mlp(bias_init: float | None = None, inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    if bias_init is not None:
        nn.init.constant_(model[0].bias, bias_init)
    return model


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 3),
    )


def transformer() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True
    )
    return nn.Sequential(
        nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False),
        nn.Flatten(),
        nn.Linear(16 * 5, 3),
    )


class SelfAttention(nn.Module):
    """One MultiheadAttention over its input: the model of the attention count-weighting tests."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def head_outputs(
    mha: nn.MultiheadAttention, x: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Each head's output (N, H, L, d) of a batch-first self-attention: weights times values."""
    e, h = mha.embed_dim, mha.num_heads
    wv, bv = mha.in_proj_weight[2 * e :], mha.in_proj_bias[2 * e :]
    v = (x @ wv.T + bv).reshape(x.shape[0], x.shape[1], h, e // h).permute(0, 2, 1, 3)
    return torch.einsum("nhls,nhsd->nhld", weights, v)


def batches(
    model_kind: str, steps: int, batch: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    shape = {"mlp": (8,), "cnn": (1, 6, 6), "transformer": (5, 16)}[model_kind]
    return [
        (torch.randn(batch, *shape, generator=g), torch.randint(0, 3, (batch,), generator=g))
        for _ in range(steps)
    ]


def steps(model: nn.Module, opt: torch.optim.Optimizer, scope: object, data: list) -> None:
    """One training step per batch of `data`, each closed by ``scope.step(loss=...)``."""
    for x, y in data:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        scope.step(loss=loss)  # type: ignore[attr-defined]


def train(
    model: nn.Module,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float = 0.05,
    scope_factory: Callable[[nn.Module, torch.optim.Optimizer], object] | None = None,
    after_backward: Callable[[int, nn.Module], None] | None = None,
) -> tuple[list[float], object]:
    """Train with SGD+momentum; returns per-step losses and the scope (closed)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scope = scope_factory(model, opt) if scope_factory else None
    losses = []
    for i, (x, y) in enumerate(data):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if after_backward:
            after_backward(i, model)
        opt.step()
        if scope is not None:
            scope.step(loss=loss)
        losses.append(loss.item())
    if scope is not None:
        scope.close()
    return losses, scope


def record_value(records: list, **fields: object) -> float:
    """The value of the one record matching `fields` (fails when none or several match)."""
    from layerscope.records import select

    found = select(records, **fields)
    assert len(found) == 1, (fields, found)
    return found[0].value
