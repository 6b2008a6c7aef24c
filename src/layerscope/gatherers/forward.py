"""Forward gatherer: module outputs, and (through tensor hooks on them) their gradients.

A forward hook that registers a tensor hook on each output leaf gets the gradient w.r.t. the
module's output for a few microseconds, where a full backward hook costs several times that and
fails after in-place operations (pytorch#61519). Hooks registered before an in-place op on the
same tensor still receive the gradient w.r.t. the value the module returned.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.observation import site_name, tensor_leaves

#: observe(module_name, kind, site, tensor)
Observe = Callable[[str, str, str, torch.Tensor], None]


class ForwardGatherer:
    """Observes the outputs (kind ``"output"``) and output gradients (``"output.grad"``) of
    the given modules while ``enabled()`` says so.

    Evaluation passes under ``torch.no_grad()`` / ``inference_mode`` are not observed: they are
    not part of training, and their activations would blur the training statistics.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        outputs: set[str],
        output_grads: set[str],
        observe: Observe,
        enabled: Callable[[str], bool],
    ) -> None:
        self._observe = observe
        self._enabled = enabled
        self._outputs = outputs
        self._output_grads = output_grads
        self._closed = False
        self._handles: list[RemovableHandle] = []
        for name in sorted(outputs | output_grads, key=list(modules).index):
            hook = partial(self._forward_hook, name)
            self._handles.append(modules[name].register_forward_hook(hook))

    def _forward_hook(self, name: str, module: nn.Module, args: Any, output: Any) -> None:  # noqa: ANN401
        if not torch.is_grad_enabled() or not self._enabled(name):
            return
        want_output = name in self._outputs
        want_grad = name in self._output_grads
        for path, tensor in tensor_leaves(output):
            if want_output:
                self._observe(name, "output", site_name(name, "output", path), tensor)
            if want_grad and tensor.requires_grad:
                site = site_name(name, "output.grad", path)
                tensor.register_hook(partial(self._grad_hook, name, site))

    def _grad_hook(self, name: str, site: str, grad: torch.Tensor) -> None:
        if not self._closed:
            self._observe(name, "output.grad", site, grad)

    def remove(self) -> None:
        """Remove every hook; tensor hooks still pending on live graphs become no-ops."""
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
