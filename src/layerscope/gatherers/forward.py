"""Forward gatherer: module outputs, and (through tensor hooks on them) their gradients.

A forward hook that registers a tensor hook on each output leaf gets the gradient w.r.t. the
module's output for a few microseconds, where a full backward hook costs several times that and
fails after in-place operations (pytorch#61519). Hooks registered before an in-place op on the
same tensor still receive the gradient w.r.t. the value the module returned.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import GatherContext, Gatherer
from layerscope.observation import site_name, tensor_leaves


class ForwardGatherer(Gatherer):
    """Observes module outputs (``"output"``) and their gradients (``"output.grad"``).

    Only the modules some lens reads them from, on the steps their schedules allow.

    Evaluation passes under ``torch.no_grad()`` / ``inference_mode`` are not observed: they are
    not part of training, and their activations would blur the training statistics.
    """

    kinds = ("output", "output.grad")

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._closed = False
        self._handles: list[RemovableHandle] = []
        for name, module in context.modules_wanting(*self.kinds).items():
            wanted = context.wanted[name]
            hook = partial(self._forward_hook, name, "output" in wanted, "output.grad" in wanted)
            self._handles.append(module.register_forward_hook(hook))

    def _forward_hook(
        self,
        name: str,
        want_output: bool,
        want_grad: bool,
        module: nn.Module,
        args: Any,
        output: Any,  # noqa: ANN401
    ) -> None:
        want_output = want_output and self.context.enabled(name, "output")
        want_grad = want_grad and self.context.enabled(name, "output.grad")
        if not (want_output or want_grad) or not torch.is_grad_enabled():
            return
        for path, tensor in tensor_leaves(output):
            if want_output:
                self.context.observe(name, "output", site_name(name, "output", path), tensor)
            if want_grad and tensor.requires_grad:
                site = site_name(name, "output.grad", path)
                tensor.register_hook(partial(self._grad_hook, name, site))

    def _grad_hook(self, name: str, site: str, grad: torch.Tensor) -> None:
        if not self._closed:
            self.context.observe(name, "output.grad", site, grad)

    def remove(self) -> None:
        """Remove every hook; tensor hooks still pending on live graphs become no-ops."""
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
