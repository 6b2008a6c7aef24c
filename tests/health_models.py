"""Models and a training loop for the health-check tests: learnable data, planted faults."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

import layerscope


def teacher_data(
    steps: int, dims: int = 8, batch: int = 32, seed: int = 1, shape: Sequence[int] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches whose labels a fixed random linear teacher assigns: a learnable task."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(shape) if shape is not None else (dims,)
    teacher = torch.randn(int(torch.tensor(shape).prod()), 3, generator=g)
    out = []
    for _ in range(steps):
        x = torch.randn(batch, *shape, generator=g)
        out.append((x, (x.reshape(batch, -1) @ teacher).argmax(1)))
    return out


def act_mlp(
    act: type[nn.Module] = nn.ReLU,
    depth: int = 2,
    width: int = 32,
    scale: float = 1.0,
    first_bias: float | None = None,
    dims: int = 8,
) -> nn.Sequential:
    """Linear/activation pairs then a 3-way head; weights ×scale, first bias set if given."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    d = dims
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, 3))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(scale)
        if first_bias is not None:
            model[0].bias.fill_(first_bias)
    return model


def run(
    model: nn.Module,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float = 0.05,
    adam: bool = False,
    lenses: Sequence[layerscope.lenses.Lens] | None = None,
    before_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    **watch: object,
) -> tuple[layerscope.Scope, list[float]]:
    """Train under ``watch`` (SGD+momentum or Adam); returns the closed scope and the losses."""
    opt = (
        torch.optim.Adam(model.parameters(), lr=lr)
        if adam
        else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    )
    losses = []
    with layerscope.watch(model, opt, lenses=lenses, **watch) as scope:  # type: ignore[arg-type]
        for i, (x, y) in enumerate(data):
            if before_step is not None:
                x = before_step(i, x)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            scope.step(loss=loss)
            losses.append(loss.item())
    return scope, losses


def kinds(scope: layerscope.Scope) -> list[tuple[str, str]]:
    """(kind, primary site) of every finding."""
    return [(f.kind, f.site) for f in scope.findings()]
