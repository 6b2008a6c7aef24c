"""Parameter gatherer: parameter values and their accumulated gradients, once per step.

A post-accumulate-grad hook on each parameter only notes that a gradient arrived; the gradient
is read when the step is taken (the optimizer's step pre-hook, or ``scope.step()``). Reading then,
not inside the hook, sees the fully accumulated gradient under gradient accumulation and the
averaged one under DDP, and costs one read per step however many micro-batches there were.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

#: observe(module_name, kind, site, tensor)
Observe = Callable[[str, str, str, torch.Tensor], None]


def parameter_kind(param_name: str) -> str:
    """``"bias"`` for bias-like parameter names, else ``"weight"``."""
    return "bias" if "bias" in param_name else "weight"


class ParameterGatherer:
    """Observes ``<param>`` values and ``<param>.grad`` of each module's direct parameters.

    Sites are ``"fc1:weight"``, ``"fc1:weight.grad"``, ``"lstm:weight_ih_l0.grad"``; their kind
    is ``"weight"``/``"bias"`` (+ ``".grad"``) by the parameter's name.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        values: set[str],
        grads: set[str],
        observe: Observe,
    ) -> None:
        self._observe = observe
        self._values: list[tuple[str, str, nn.Parameter]] = []
        self._grads: list[tuple[str, str, nn.Parameter]] = []
        self._fresh: set[int] = set()
        self._handles: list[RemovableHandle] = []
        for name, module in modules.items():
            for pname, param in module.named_parameters(recurse=False):
                entry = (name, pname, param)
                if name in values:
                    self._values.append(entry)
                if name in grads and param.requires_grad:
                    index = len(self._grads)
                    self._grads.append(entry)
                    hook = partial(self._arrived, index)
                    self._handles.append(param.register_post_accumulate_grad_hook(hook))

    def _arrived(self, index: int, param: torch.Tensor) -> None:
        self._fresh.add(index)

    def collect(self, enabled: Callable[[str], bool]) -> None:
        """Observe values and the gradients that arrived since the last call."""
        for name, pname, param in self._values:
            if enabled(name):
                self._observe(name, parameter_kind(pname), f"{name or 'model'}:{pname}", param.detach())
        for index in sorted(self._fresh):
            name, pname, param = self._grads[index]
            if param.grad is not None and enabled(name):
                self._observe(name, parameter_kind(pname) + ".grad", f"{name or 'model'}:{pname}.grad", param.grad)
        self._fresh.clear()

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
