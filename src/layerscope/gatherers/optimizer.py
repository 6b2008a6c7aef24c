"""Optimizer gatherer: optimizer state, effective step sizes and the update of each parameter.

Everything is torch ops on the parameters' device and handed to the scope, which copies to the
host only at a flush: no host synchronisation.

The update Δw is measured, not inferred, so it works for every optimizer, unknown ones too:
before the step (the optimizer's step pre-hook) each observed parameter is copied, after it
Δw = w - copy is written over the copy. That costs one copy of every observed parameter: on a
device held only from the step pre-hook to the post-hook of observed steps (the caching
allocator makes the next one cheap); in CPU memory kept between them, since a fresh buffer of
that size comes back from the operating system page by page, and faulting those pages in
costs several times the copy itself.

Adam's effective step lr / (sqrt(v̂) + eps) falls as v̂ grows, so it is never formed for every
element: its extremes come from those of v̂ and the share of eps-dominated elements from a count
of v̂ below eps² (one pass, no temporary, on the CPU), and only an evenly strided sample of v̂
(:data:`~layerscope.reducers.DISTRIBUTION_SAMPLE` elements at most) is turned into step sizes
for the statistics that need the values themselves (mean, quantiles).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from layerscope.gatherers.base import GatherContext, Gatherer
from layerscope.observation import is_distributed_tensor, site_name
from layerscope.reducers import (
    extremes_and_count_below,
    extremes_and_count_below_torch,
    strided_sample,
)

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


class AdamStepSizes(NamedTuple):
    """What is observed of Adam's effective step lr / (sqrt(v̂) + eps) for one parameter."""

    sample: torch.Tensor  # step sizes at an evenly strided sample of the elements (all if few)
    extremes: torch.Tensor | None  # smallest and largest over every element; None: not sampled
    eps_dominance: torch.Tensor  # 0-d share of the elements where sqrt(v̂) < eps


def adam_step_sizes(state: dict, group: dict) -> AdamStepSizes:
    """Adam's effective step sizes, read off the second moment without a full-size temporary.

    ``v̂`` is the bias-corrected second moment (``max_exp_avg_sq`` under amsgrad). The step
    size decreases with v̂, so its extremes are those of v̂ transformed, and sqrt(v̂) < eps is
    v < eps² · (1 - beta2^step): exact over every element from one pass over v. On the CPU that
    pass is the C++ kernel; elsewhere torch ops on the device, with no host synchronisation.
    """
    beta2, eps = group["betas"][1], group["eps"]
    step, lr = _on_host(state["step"]), _on_host(group["lr"])
    correction = 1 - beta2**step
    second = (state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]).detach()
    if is_distributed_tensor(second):
        return _sharded_step_sizes(second, correction, eps, lr)

    def step_size(v: torch.Tensor) -> torch.Tensor:  # a fresh tensor: in place after the division
        wide = v if v.dtype == torch.float64 else v.float()
        return (wide / correction).sqrt_().add_(eps).reciprocal_().mul_(lr)

    sample = step_size(strided_sample(second))
    sampled = sample.numel() < second.numel()  # else the sample's own extremes are exact
    level = eps * eps * correction
    on_host = not isinstance(level, torch.Tensor) and not isinstance(lr, torch.Tensor)
    if second.device.type == "cpu" and on_host:
        # Host numbers from the C++ pass: a handful of float operations, not of tensor ops.
        smallest, largest, below = extremes_and_count_below(second, level)
        extremes = [
            lr / (math.sqrt(v / correction) + eps) if v >= 0 else math.nan
            for v in (largest, smallest)
        ]
        return AdamStepSizes(
            sample,
            torch.tensor(extremes, dtype=torch.float64) if sampled else None,
            torch.tensor(below / second.numel(), dtype=torch.float64),
        )
    second_extremes, below = extremes_and_count_below_torch(second, level)
    return AdamStepSizes(
        sample,
        step_size(second_extremes) if sampled else None,
        below.double() / second.numel(),
    )


def _sharded_step_sizes(
    second: torch.Tensor, correction: float, eps: float, lr: float | torch.Tensor
) -> AdamStepSizes:
    """Step sizes of a sharded DTensor (FSDP2) at every element; the scope reads it by shards.

    The eps dominance is the 0/1 mask, whose mean merged across ranks is the whole tensor's
    share (a mean of the shards' shares would weigh uneven shards equally).
    """
    root = (second.float() / correction).sqrt_()
    dominance = (root < eps).float()
    return AdamStepSizes(root.add_(eps).reciprocal_().mul_(lr), None, dominance)


def _on_host(value: float | torch.Tensor) -> float | torch.Tensor:
    """A CPU tensor as a Python float (no device sync, double precision as torch's Adam)."""
    if isinstance(value, torch.Tensor) and value.device.type == "cpu":
        return float(value)
    return value


def measured_update(param: nn.Parameter, before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Δw = w - `before` (written over `before`, which is no longer needed) and ‖Δw‖ / ‖before‖.

    The norms read the tensors in place, accumulating half precision in float32.
    """
    before_norm = _l2(before)
    delta = torch.sub(param.detach(), before, out=before)
    return delta, _l2(delta) / before_norm


def _l2(x: torch.Tensor) -> torch.Tensor:
    wide = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None
    return torch.linalg.vector_norm(x, dtype=wide)


class OptimizerGatherer(Gatherer):
    """Observes the optimizer given to ``watch``.

    Kinds and sites (``<p>`` a parameter site as the parameter gatherer names it, ``"fc1:weight"``):
    ``"optimizer.state"`` at ``"<p>.<key>"`` for each :data:`STATE_KEYS` tensor the optimizer
    keeps, and for Adam/AdamW ``"<p>.eps_dominance"`` (0-d fraction) and, for parameters over
    ``DISTRIBUTION_SAMPLE`` elements, ``"<p>.step_size_extremes"`` (the smallest and largest
    step size over every element); ``"optimizer.step_size"`` at ``"<p>.step_size"``
    (Adam/AdamW: the step sizes at an evenly strided sample of ``DISTRIBUTION_SAMPLE``
    elements, at every element of smaller parameters); ``"optimizer.update"`` at ``"<p>.update"``
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
        self._snapshots: dict[int, torch.Tensor] = {}  # CPU parameters' reused copies

    def before_step(self) -> None:
        """Copy the parameters whose update is observed on this step."""
        enabled = self.context.enabled
        for i, (name, _, param, _, wanted) in enumerate(self._params):
            if "optimizer.update" in wanted and enabled(name, "optimizer.update"):
                self._before[i] = self._snapshot(i, param.detach())

    def _snapshot(self, i: int, value: torch.Tensor) -> torch.Tensor:
        """A copy of `value`; for CPU tensors into the buffer kept for parameter `i`."""
        if not value.is_cpu or is_distributed_tensor(value):
            return value.clone()
        buffer = self._snapshots.get(i)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = self._snapshots[i] = torch.empty_like(value)
        return buffer.copy_(value)

    def after_step(self) -> None:
        """Observe state, step sizes, updates and learning rates after the update."""
        observe, enabled = self.context.observe, self.context.enabled
        groups = self.optimizer.param_groups
        for i, (name, site, param, group, wanted) in enumerate(self._params):
            before = self._before.pop(i, None)
            if before is not None:
                if is_distributed_tensor(param):
                    # FSDP2: torch reduces both norms across ranks, so the ratio is the whole
                    # tensor's (two small all-reduces per parameter, on observed steps only).
                    delta = param.detach() - before
                    ratio = torch.linalg.vector_norm(delta.float()) / torch.linalg.vector_norm(
                        before.float()
                    )
                else:
                    delta, ratio = measured_update(param, before)
                observe(name, "optimizer.update", f"{site}.update", delta)
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
                steps = adam_step_sizes(state, groups[group])
                observe(name, "optimizer.step_size", f"{site}.step_size", steps.sample)
                if steps.extremes is not None:
                    observe(name, "optimizer.state", f"{site}.step_size_extremes", steps.extremes)
                observe(name, "optimizer.state", f"{site}.eps_dominance", steps.eps_dominance)
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
        self._snapshots.clear()
