"""Optimizer gatherer: optimizer state, effective step sizes and the update of each parameter.

Everything is torch ops on the parameters' device and handed to the scope, which copies to the
host only at a flush: no host synchronisation.

The update Δw is measured, not inferred, so it works for every optimizer, unknown ones too:
before the step (the optimizer's step pre-hook) each observed parameter is copied, after it
Δw = w - copy. That costs one copy of every observed parameter, held only from the step
pre-hook to the post-hook, plus one parameter-sized temporary for Δw — on observed steps only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerscope.gatherers.base import GatherContext, Gatherer
from layerscope.observation import is_distributed_tensor, site_name

#: State tensors read when an optimizer keeps them (per parameter, shaped like it).
STATE_KEYS: tuple[str, ...] = (
    "exp_avg",  # Adam, AdamW: first moment
    "exp_avg_sq",  # Adam, AdamW: second moment
    "max_exp_avg_sq",  # Adam, AdamW with amsgrad
    "momentum_buffer",  # SGD (also Nesterov), RMSprop with momentum
    "square_avg",  # RMSprop
    "grad_avg",  # RMSprop centered
    "sum",  # Adagrad
)
#: Optimizers whose update is lr · m̂ / (sqrt(v̂) + eps): their effective step size is read.
ADAM_LIKE: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.Adam, torch.optim.AdamW)


def adam_step_size(state: dict, group: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective per-element step lr / (sqrt(v̂) + eps) and the eps-dominance fraction.

    ``v̂`` is the bias-corrected second moment (``max_exp_avg_sq`` under amsgrad); eps
    dominates an element's denominator where sqrt(v̂) < eps. Returns (step sizes, 0-d fraction);
    for a sharded DTensor (FSDP2) the fraction is the shard's 0/1 mask, whose mean merged across
    ranks is the whole tensor's fraction (a mean of the shards' fractions would weigh them equally).
    """
    step = state["step"]
    if isinstance(step, torch.Tensor) and step.device.type == "cpu":
        step = float(step)  # host scalar: no device sync, double precision as torch's Adam
    beta2, eps, lr = group["betas"][1], group["eps"], group["lr"]
    correction = 1 - beta2**step
    second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    root = (second.detach().float() / correction).sqrt_()  # a fresh temporary: in place below
    dominance = (root < eps).float()
    dominance = dominance if is_distributed_tensor(root) else dominance.mean()
    return root.add_(eps).reciprocal_().mul_(lr), dominance


class OptimizerGatherer(Gatherer):
    """Observes the optimizer given to ``watch``.

    Kinds and sites (``<p>`` a parameter site as the parameter gatherer names it, ``"fc1:weight"``):
    ``"optimizer.state"`` at ``"<p>.<key>"`` for each :data:`STATE_KEYS` tensor the optimizer
    keeps, and for Adam/AdamW ``"<p>.eps_dominance"`` (0-d fraction); ``"optimizer.step_size"``
    at ``"<p>.step_size"`` (Adam/AdamW, per element); ``"optimizer.update"`` at ``"<p>.update"``
    (Δw) and ``"<p>.update_ratio"`` (0-d ‖Δw‖/‖w‖, w before the step); ``"optimizer.lr"`` at
    ``"param_group[i]"`` (observed under the root module, ``""``).
    """

    kinds = ("optimizer.state", "optimizer.step_size", "optimizer.update", "optimizer.lr")
    replicated = True  # under DDP every rank holds the same parameters and optimizer state

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        optimizer = context.optimizer
        if optimizer is None:
            raise ValueError(
                "Optimizer lens: no optimizer to read; pass it to watch(model, optimizer=opt)"
            )
        self.optimizer = optimizer
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self._params: list[tuple[str, str, nn.Parameter, int, frozenset[str]]] = []
        for name, module in context.modules_wanting(*self.kinds).items():
            wanted = frozenset(context.wanted[name])
            for pname, param in module.named_parameters(recurse=False):
                if id(param) in group_of:
                    self._params.append(
                        (name, site_name(name, "", pname), param, group_of[id(param)], wanted)
                    )
        self._lr = "optimizer.lr" in context.wanted.get("", set())
        self._before: dict[int, torch.Tensor] = {}

    def before_step(self) -> None:
        """Copy the parameters whose update is observed on this step."""
        enabled = self.context.enabled
        for i, (name, _, param, _, wanted) in enumerate(self._params):
            if "optimizer.update" in wanted and enabled(name, "optimizer.update"):
                self._before[i] = param.detach().clone()

    def after_step(self) -> None:
        """Observe state, step sizes, updates and learning rates after the update."""
        observe, enabled = self.context.observe, self.context.enabled
        groups = self.optimizer.param_groups
        for i, (name, site, param, group, wanted) in enumerate(self._params):
            before = self._before.pop(i, None)
            if before is not None:
                delta = param.detach() - before
                observe(name, "optimizer.update", f"{site}.update", delta)
                # DTensors (FSDP2): the norms are reduced across ranks, the ratio is the
                # whole tensor's (two small all-reduces per parameter, on observed steps only)
                ratio = torch.linalg.vector_norm(delta.float()) / torch.linalg.vector_norm(
                    before.float()
                )
                observe(name, "optimizer.update", f"{site}.update_ratio", ratio)
            state = self.optimizer.state.get(param)
            if not state:
                continue
            if "optimizer.state" in wanted and enabled(name, "optimizer.state"):
                for key in STATE_KEYS:
                    value = state.get(key)
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        observe(name, "optimizer.state", f"{site}.{key}", value.detach())
            if (
                isinstance(self.optimizer, ADAM_LIKE)
                and "exp_avg_sq" in state
                and "step" in state
                and enabled(name, "optimizer.step_size")
            ):
                steps, dominance = adam_step_size(state, groups[group])
                observe(name, "optimizer.step_size", f"{site}.step_size", steps)
                observe(name, "optimizer.state", f"{site}.eps_dominance", dominance)
        self._before.clear()
        if self._lr and enabled("", "optimizer.lr"):
            for i, group in enumerate(groups):
                lr = group.get("lr")
                if isinstance(lr, torch.Tensor):
                    observe("", "optimizer.lr", f"param_group[{i}]", lr.detach().float())
                elif isinstance(lr, (int, float)) and math.isfinite(lr):
                    observe("", "optimizer.lr", f"param_group[{i}]", torch.tensor(float(lr)))

    def remove(self) -> None:
        """Drop the snapshots (the scope owns the optimizer hooks)."""
        self._before.clear()
