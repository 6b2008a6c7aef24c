"""Outputs known to hold no NaN or Inf without reading them: finite in, finite out.

Some modules cannot make a non-finite value out of finite ones: they select elements of their
input (max pooling, flattening), clamp them (ReLU, ReLU6, Hardtanh) or scale them by at most one
(LeakyReLU with a slope of magnitude at most one). When such a module's input is an output the
finiteness gatherer has just counted clean, or proved clean this way, and nothing has written
to it since, its output is clean too, and the search for NaN and Inf need not read it: a
Conv -> ReLU -> MaxPool chain is read once, at the convolution's output, not three times.

The backward pass is proved the same way, from the other end. The gradient such a module's
node hands back (a ReLU's mask of the gradient it received, a reshape, max pooling's copy of
each value into one place) is clean when the gradient it received was counted or proved clean
(:func:`keeps_finite_backward`). When that very tensor is the whole gradient reaching the
module's input, no other consumer having added to it, the input's gradient is not read
either.

Each proof is exact for the modules admitted, and holds only for the very tensor that was
counted, unchanged since: :class:`KnownFinite` keeps a weak reference to each clean tensor
(torch keeps a tensor's Python object while the tensor lives, so an object seen again is the
same tensor) and the version counter it had (which every in-place torch op bumps), and checks
both. A gradient summed from several consumers is a new tensor (or the first one written in
place), and is read.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import nn

#: Modules whose output on finite input is finite, whatever their options: selections of
#: their input (pooling by maximum, reshaping) and clamps to finite bounds.
_ALWAYS_FINITE: frozenset[type[nn.Module]] = frozenset(
    {
        nn.ReLU,
        nn.ReLU6,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d,
        nn.Flatten,
        nn.Unflatten,
        nn.Identity,
    }
)


def keeps_finite(module: nn.Module) -> bool:
    """Whether `module` gives a finite output for every finite input, exactly.

    Only modules of exactly these classes (a subclass may compute anything), with their class's
    own ``forward``: those of :data:`_ALWAYS_FINITE`; ``LeakyReLU`` whose slope has magnitude at
    most 1; ``Hardtanh`` with finite bounds. Activations that compute are left out, even those
    bounded in exact arithmetic: torch's float32 GELU returns inf from 1.7e38 up (its
    intermediate ``x * (1 + erf(...))`` overflows), Hardswish from 6.4e37, and whether SiLU's
    or Tanh's kernels stay finite may differ between CPU instruction sets.
    """
    if "forward" in vars(module):  # a forward replaced on the instance
        return False
    kind = type(module)
    if kind in _ALWAYS_FINITE:
        return True
    if kind is nn.LeakyReLU:
        return abs(module.negative_slope) <= 1
    if kind is nn.Hardtanh:
        return math.isfinite(module.min_val) and math.isfinite(module.max_val)
    return False


#: The autograd nodes, by module class, whose gradient w.r.t. the module's input is finite when
#: the gradient they receive is: masks (``where(x > 0, g, 0)``), scaling by at most one, a copy
#: of each value into at most one place (max pooling whose windows do not overlap), reshaping.
_FINITE_BACKWARD: dict[type[nn.Module], frozenset[str]] = {
    nn.ReLU: frozenset(
        {"ReluBackward0", "ReluBackward1", "ThresholdBackward0", "ThresholdBackward1"}
    ),
    nn.ReLU6: frozenset({"HardtanhBackward0", "HardtanhBackward1"}),
    nn.Hardtanh: frozenset({"HardtanhBackward0", "HardtanhBackward1"}),
    nn.LeakyReLU: frozenset({"LeakyReluBackward0", "LeakyReluBackward1"}),
    nn.MaxPool2d: frozenset({"MaxPool2DWithIndicesBackward0"}),
    nn.MaxPool3d: frozenset({"MaxPool3DWithIndicesBackward0"}),
    nn.Flatten: frozenset({"ViewBackward0", "UnsafeViewBackward0"}),
    nn.Unflatten: frozenset({"ViewBackward0", "UnsafeViewBackward0"}),
}


def keeps_finite_backward(module: nn.Module) -> frozenset[str]:
    """The names of the autograd nodes of `module`'s output that keep a finite gradient finite.

    Empty unless :func:`keeps_finite` admits the module and its backward pass moves each
    gradient value to at most one place, unchanged or scaled by at most one: max pooling only
    where its windows do not overlap (overlapping ones add gradients up).
    """
    nodes = _FINITE_BACKWARD.get(type(module), frozenset())
    if not nodes or not keeps_finite(module):
        return frozenset()
    if isinstance(module, (nn.MaxPool2d, nn.MaxPool3d)):
        dims = 2 if isinstance(module, nn.MaxPool2d) else 3
        kernel = _per_dim(module.kernel_size, dims)
        stride = _per_dim(module.stride or module.kernel_size, dims)
        dilation = _per_dim(module.dilation, dims)
        if any(s < d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation, strict=True)):
            return frozenset()
    return nodes


def _per_dim(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * dims


class KnownFinite:
    """The tensors of the step in progress known to hold no NaN or Inf, as they are now.

    Each is kept by a weak reference (no tensor outlives its use) with its version counter at
    the time it was known clean; a tensor written in place since then is no longer known.
    """

    def __init__(self) -> None:
        self._clean: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}

    def add(self, tensor: torch.Tensor) -> None:
        """Note that `tensor`, as it is now, holds no NaN or Inf."""
        self._clean[id(tensor)] = (weakref.ref(tensor), tensor._version)

    def _version_when_clean(self, tensor: torch.Tensor) -> int | None:
        """The version `tensor` had when it was known clean; None when it never was."""
        known = self._clean.get(id(tensor))
        if known is None or known[0]() is not tensor:  # another tensor at a reused address
            return None
        return known[1]

    def holds(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is known clean, as it is now."""
        return self._version_when_clean(tensor) == tensor._version

    def output_is_clean(
        self,
        args: Any,  # noqa: ANN401 - a module's positional arguments
        output: torch.Tensor,
        inplace: bool,
    ) -> bool:
        """Whether a :func:`keeps_finite` module's `output` is clean: its input is known clean.

        `args` are the positional arguments of the call; the input is the first. A module that
        works in place (``ReLU(inplace=True)``) returns its input written once more.
        """
        if not args or type(args[0]) is not torch.Tensor:
            return False
        source = args[0]
        version = self._version_when_clean(source)
        written = 1 if inplace and output is source else 0
        return version is not None and source._version == version + written

    def clear(self) -> None:
        """Forget every tensor (at the step boundary)."""
        self._clean.clear()
