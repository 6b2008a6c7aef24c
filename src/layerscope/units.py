"""Which modules have units, and which tensor axis holds them: output features, or channels.

Modules are recognised by what they do, not by a list of torch's classes, so that other
libraries' layers count too (transformers' ``Conv1D`` is a linear layer with a 2-D weight, its
``NewGELUActivation`` an activation).
"""

from __future__ import annotations

import re

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

#: torch's activation modules that are not unit-wise activations: they normalise across units.
_NOT_UNITWISE = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.MultiheadAttention)
#: Class names of activations outside torch (transformers' ``GELUActivation``, ``QuickGELU``...).
_ACTIVATION_NAME = re.compile(r"activation|gelu|relu|silu|swish|mish|tanh|sigmoid|softplus|elu")
#: Class names that match :data:`_ACTIVATION_NAME` but pass their input on unchanged.
_IDENTITY_NAME = re.compile(r"linear|identity|softmax")


def has_weight_matrix(module: nn.Module) -> bool:
    """Whether `module` owns a ``weight`` of two or more dimensions (a linear map, a conv)."""
    weight = getattr(module, "_parameters", {}).get("weight")
    return weight is not None and weight.dim() >= 2


def is_activation(module: nn.Module) -> bool:
    """Whether `module` is a unit-wise activation: torch's own, or one named like one.

    A leaf module defined in ``torch.nn.modules.activation`` (softmax-like ones excepted), or
    whose class name says activation, GELU, ReLU, SiLU, Swish, Mish, tanh, sigmoid, softplus or
    ELU (``LinearActivation``, an identity, excepted).
    """
    if any(True for _ in module.children()):
        return False
    cls = type(module)
    if cls.__module__ == "torch.nn.modules.activation":
        return not isinstance(module, _NOT_UNITWISE)
    name = cls.__name__.lower()
    return bool(_ACTIVATION_NAME.search(name)) and not _IDENTITY_NAME.search(name)


def activation_family(cls: type[nn.Module]) -> str | None:
    """``"tanh"``, ``"sigmoid"``, ``"smooth_relu"`` (GELU, SiLU, Mish) or None, by class.

    torch's classes by inheritance, others by their name (``NewGELUActivation`` is a GELU);
    the hard and shrinking variants (``Hardtanh``, ``Tanhshrink``) are none of these.
    """
    if issubclass(cls, nn.Tanh):
        return "tanh"
    if issubclass(cls, nn.Sigmoid):
        return "sigmoid"
    if issubclass(cls, (nn.GELU, nn.SiLU, nn.Mish)):
        return "smooth_relu"
    if cls.__module__.startswith("torch.nn"):
        return None
    name = cls.__name__.lower().removesuffix("activation")
    if re.search(r"gelu|silu|swish|mish", name):
        return "smooth_relu"
    if name == "tanh":
        return "tanh"
    if name == "sigmoid":
        return "sigmoid"
    return None


def unit_axes(modules: dict[str, nn.Module]) -> dict[str, UnitAxis]:
    """The unit axis of every module.

    The last axis for Linear-like modules (attention too: its embedding axis, and any other
    module with a weight matrix), axis 1 (channels) for convolutions and their norms;
    other modules (activations) inherit the axis of the module before them in
    ``named_modules()`` order, which is what feeds them in a sequential model.
    """
    axes: dict[str, UnitAxis] = {}
    previous: UnitAxis = (-1, True)
    for name, module in modules.items():
        if isinstance(module, _CHANNELS_FIRST):
            previous = (1, False)
        elif isinstance(module, _FEATURES_LAST) or has_weight_matrix(module):
            previous = (-1, True)  # a linear map not of torch's (transformers' Conv1D)
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
