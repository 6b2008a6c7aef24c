"""Which tensor axis holds a module's units: output features, or channels."""

from __future__ import annotations

import torch
from torch import nn

#: Convolutions: their units are the channels, at axis 1 of a batched output.
CONVOLUTIONS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_CHANNELS_FIRST = (
    *CONVOLUTIONS,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
)
_FEATURES_LAST = (nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.MultiheadAttention) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()  # torch >= 2.4
)

#: (axis, counted from the end)
UnitAxis = tuple[int, bool]


def unit_axes(modules: dict[str, nn.Module]) -> dict[str, UnitAxis]:
    """The unit axis of every module.

    The last axis for Linear-like modules (attention too: its embedding axis), axis 1 (channels)
    for convolutions and their norms;
    other modules (activations) inherit the axis of the module before them in
    ``named_modules()`` order, which is what feeds them in a sequential model.
    """
    axes: dict[str, UnitAxis] = {}
    previous: UnitAxis = (-1, True)
    for name, module in modules.items():
        if isinstance(module, _CHANNELS_FIRST):
            previous = (1, False)
        elif isinstance(module, _FEATURES_LAST):
            previous = (-1, True)
        axes[name] = previous
    return axes


def unit_axis(axis: UnitAxis | None, tensor: torch.Tensor) -> int | None:
    """The concrete unit axis of `tensor`, or None for a 0-d tensor."""
    if tensor.dim() == 0:
        return None
    position, from_end = axis or (-1, True)
    if from_end:
        return position
    if tensor.dim() < 3:  # an unbatched convolution input: (C, L)
        return 0
    return min(position, tensor.dim() - 1)
