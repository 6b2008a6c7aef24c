"""Parameter gatherer: parameter values and their accumulated gradients, once per step.

A post-accumulate-grad hook on each parameter only notes that a gradient arrived; the gradient
is read when the step is taken (the optimizer's step pre-hook, or ``scope.step()``). Reading then,
not inside the hook, sees the fully accumulated gradient under gradient accumulation and the
averaged one under DDP, and costs one read per step however many micro-batches there were.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import GatherContext, Gatherer, contained
from layerscope.observation import site_name

log = logging.getLogger("layerscope")


def parameter_kind(param_name: str) -> str:
    """``"bias"`` for bias-like parameter names, else ``"weight"``."""
    return "bias" if "bias" in param_name else "weight"


def owned_parameters(
    modules: dict[str, nn.Module], wanted: Iterable[str]
) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """The direct parameters each of the `wanted` modules is observed with, each parameter once.

    A parameter held by several modules (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``)
    is observed at the first of the `wanted` modules that holds it, in model order — the name
    ``named_parameters()`` gives it — so that gradient norms, shares and depth profiles count it
    once. :func:`shared_parameters` says where else it is held.
    """
    wanted = set(wanted)
    seen: set[int] = set()
    out: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, module in modules.items():
        if name not in wanted:
            continue
        for pname, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                out.setdefault(name, []).append((pname, param))
    return out


def shared_parameters(modules: dict[str, nn.Module]) -> dict[str, list[str]]:
    """Parameter sites held by several modules -> the other holders' parameter names.

    Example: ``{"transformer.wte:weight": ["lm_head.weight"]}`` for a GPT-2 with tied embeddings.
    """
    holders: dict[int, list[str]] = {}
    for name, module in modules.items():
        for pname, param in module.named_parameters(recurse=False):
            holders.setdefault(id(param), []).append(f"{name}.{pname}" if name else pname)
    out: dict[str, list[str]] = {}
    for names in holders.values():
        if len(names) > 1:
            module, _, pname = names[0].rpartition(".")
            out[site_name(module, "", pname)] = names[1:]
    return out


class ParameterGatherer(Gatherer):
    """Observes ``<param>`` values and ``<param>.grad`` of each module's direct parameters.

    Sites are ``"fc1:weight"``, ``"fc1:weight.grad"``, ``"lstm:weight_ih_l0.grad"``; their kind
    is ``"weight"``/``"bias"`` (+ ``".grad"``) by the parameter's name. A parameter shared by
    several modules (tied embeddings) has one site, at its first holder
    (:func:`owned_parameters`); :attr:`shared` maps such sites to the other holders.

    The gradient is read at the optimizer step (its step pre-hook), after the whole backward:
    what the optimizer is given, so after ``clip_grad_norm_`` where the loop clips.
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
        #: site of a shared parameter -> the other modules' names for it
        self.shared = shared_parameters(context.modules)
        for site, others in self.shared.items():
            log.info(
                "layerscope: %s is the same parameter as site %s; it is observed once, there",
                ", ".join(others),
                site,
            )
        owned = owned_parameters(context.modules, context.modules_wanting(*self.kinds))
        for name, params in owned.items():
            wanted = context.wanted[name]
            for pname, param in params:
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
