"""Parameter gatherer: parameter values and their accumulated gradients, once per step.

A post-accumulate-grad hook on each parameter only notes that a gradient arrived; the gradient
is read when the step is taken (the optimizer's step pre-hook, or ``scope.step()``). Reading then,
not inside the hook, sees the fully accumulated gradient under gradient accumulation and the
averaged one under DDP, and costs one read per step however many micro-batches there were.
"""

from __future__ import annotations

from collections.abc import Container
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import GatherContext, Gatherer, contained
from layerscope.observation import site_name


def parameter_kind(param_name: str) -> str:
    """``"bias"`` for bias-like parameter names, else ``"weight"``."""
    return "bias" if "bias" in param_name else "weight"


class ParameterGatherer(Gatherer):
    """Observes ``<param>`` values and ``<param>.grad`` of each module's direct parameters.

    Sites are ``"fc1:weight"``, ``"fc1:weight.grad"``, ``"lstm:weight_ih_l0.grad"``; their kind
    is ``"weight"``/``"bias"`` (+ ``".grad"``) by the parameter's name.
    """

    kinds = ("weight", "bias", "weight.grad", "bias.grad")
    replicated = True

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._values: list[tuple[str, str, str, nn.Parameter]] = []
        self._grads: list[tuple[str, str, str, nn.Parameter]] = []
        self._fresh: set[int] = set()
        self._handles: dict[int, RemovableHandle] = {}
        self._frozen: set[int] = set()  # wanted, but not requiring a gradient when last looked
        for name, module in context.modules_wanting(*self.kinds).items():
            wanted = context.wanted[name]
            for pname, param in module.named_parameters(recurse=False):
                kind = parameter_kind(pname)
                if kind in wanted:
                    self._values.append((name, kind, site_name(name, "", pname), param))
                if f"{kind}.grad" in wanted:  # frozen ones too: they may be unfrozen later
                    self._grads.append(
                        (name, f"{kind}.grad", site_name(name, "", f"{pname}.grad"), param)
                    )

    def follow(self, plan: Container[tuple[str, str]]) -> None:
        """Listen for the gradients the plan observes, and only those.

        The hooks fire for every micro-batch's accumulation, so steps that read no gradient
        go without them.
        """
        self._frozen.clear()
        for index, (name, kind, _, param) in enumerate(self._grads):
            wanted = (name, kind) in plan
            handle = self._handles.get(index)
            if wanted and handle is None:
                self._listen(index, param)
            elif not wanted and handle is not None:
                handle.remove()
                del self._handles[index]

    def _listen(self, index: int, param: nn.Parameter) -> bool:
        """Hook `param`'s gradient; a frozen parameter is looked at again each step."""
        if not param.requires_grad:
            self._frozen.add(index)
            return False
        self._frozen.discard(index)
        hook = partial(self._arrived, index)
        self._handles[index] = param.register_post_accumulate_grad_hook(hook)
        return True

    @contained
    def _arrived(self, index: int, param: torch.Tensor) -> None:
        self._fresh.add(index)

    def before_step(self) -> None:
        """Observe values and the gradients that arrived since the last step."""
        enabled, observe = self.context.enabled, self.context.observe
        for index in list(self._frozen):  # unfrozen since: this step's gradient is its first
            param = self._grads[index][3]
            if self._listen(index, param) and param.grad is not None:
                self._fresh.add(index)
        for name, kind, site, param in self._values:
            if enabled(name, kind):
                observe(name, kind, site, param.detach())
        for index in sorted(self._fresh):
            name, kind, site, param = self._grads[index]
            if param.grad is not None and enabled(name, kind):
                observe(name, kind, site, param.grad)
        self._fresh.clear()

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
