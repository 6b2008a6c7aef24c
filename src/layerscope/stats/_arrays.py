"""Turning user arrays into buffers the C++ engine reads in place, with errors that say why not."""

from __future__ import annotations

from typing import Any

import numpy as np


def readable(array: Any, caller: str) -> Any:  # noqa: ANN401 - any array-like goes in
    """Return `array` in a form ``layerscope._core`` accepts without copying.

    Torch tensors are detached (a view, no copy) so tensors that require grad are accepted;
    numpy arrays and other DLPack / buffer-protocol objects pass through; anything else goes
    through ``numpy.asarray``. The engine itself checks dtype and layout.

    Raises:
        TypeError: for tensors outside CPU memory or with a sparse / non-strided layout.
    """
    if isinstance(array, np.ndarray):
        return array
    if type(array).__module__.startswith("torch"):
        import torch

        if isinstance(array, torch.Tensor):
            if array.device.type != "cpu":
                raise TypeError(
                    f"{caller}: got a tensor on {array.device}; layerscope.stats reads CPU "
                    "memory (call .cpu() first; a Scope reduces CUDA tensors on the device)"
                )
            if array.layout != torch.strided:
                raise TypeError(
                    f"{caller}: got a {array.layout} tensor; only dense (strided) tensors are "
                    "accepted (call .to_dense() first)"
                )
            tensor = array.detach()
            if tensor.is_conj():
                tensor = tensor.resolve_conj()
            if tensor.is_neg():
                tensor = tensor.resolve_neg()
            return tensor
    if hasattr(array, "__dlpack__") or hasattr(array, "__array_interface__"):
        return array
    return np.asarray(array)
