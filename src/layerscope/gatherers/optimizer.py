"""Optimizer gatherer: optimizer state, effective step sizes and the update of each parameter.

The update Δw is measured, not inferred, so it works for every optimizer, unknown ones too:
before the step (the optimizer's step pre-hook) each observed parameter is copied, and after it
Δw = w - copy. That costs one copy of every observed parameter: on a device held only from the
step pre-hook to the post-hook of observed steps (the caching allocator makes the next one
cheap); in CPU memory kept between them, since a fresh buffer of that size comes back from the
operating system page by page, and faulting those pages in costs several times the copy itself.

Adam's effective step lr / (sqrt(v̂) + eps) falls as v̂ grows, so it is never formed for every
element: its extremes come from those of v̂, the share of eps-dominated elements from a count
of v̂ below eps², and only an evenly strided sample of v̂
(:data:`~layerscope.stats.tensors.DISTRIBUTION_SAMPLE` elements at most) is turned into step sizes
for the statistics that need the values themselves (mean, quantiles).

Two paths compute this. Contiguous float32 CPU parameters, whose state is the same, are read
by one pass of the C++ kernel (``_core.summarize_step``) when a summary is all the lenses read
of their update and state on this step (``GatherContext.summary_suffices``): it reads w, the
copy, the state tensors and v once, leaves the copy as it is, and the summaries go to the scope
as they are (``observe_summary``); only the step sizes' sample goes through ``observe`` as a
tensor. Everything else (device tensors, FSDP2's DTensors, other dtypes, non-contiguous
tensors, lenses that want quantiles or histograms of these sites, the scope's
``force_torch_reducer``) takes torch ops on the parameters' device, handed to the scope, which
copies to the host only at a flush: no host synchronisation. There Δw is written over the copy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.dlpack import to_dlpack

from layerscope import _core
from layerscope.gatherers.base import GatherContext, Gatherer
from layerscope.gatherers.parameters import owned_parameters
from layerscope.observation import is_distributed_tensor, site_name
from layerscope.stats.tensors import (
    TEAM,
    extremes_and_count_below,
    extremes_and_count_below_torch,
    sample_stride,
    strided_sample,
    summary_of_values,
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
    eps_dominance: torch.Tensor  # 0-d share of the elements with v > 0 where sqrt(v̂) < eps


class AdamScalars(NamedTuple):
    """What Adam's effective step size of one parameter is computed from."""

    second: torch.Tensor  # v: exp_avg_sq, or max_exp_avg_sq under amsgrad (detached)
    correction: float | torch.Tensor  # 1 - beta2^step
    eps: float
    lr: float | torch.Tensor  # a Python float unless on a device


def adam_scalars(state: dict, group: dict) -> AdamScalars:
    """Read v and the scalars of lr / (sqrt(v / correction) + eps) off Adam's state and group."""
    beta2, eps = group["betas"][1], group["eps"]
    step, lr = _on_host(state["step"]), _on_host(group["lr"])
    second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    return AdamScalars(second.detach(), 1 - beta2**step, eps, lr)


def adam_step_sizes(state: dict, group: dict) -> AdamStepSizes:
    """Adam's effective step sizes, read off the second moment without a full-size temporary.

    ``v̂`` is the bias-corrected second moment (``max_exp_avg_sq`` under amsgrad). The step
    size decreases with v̂, so its extremes are those of v̂ transformed, and sqrt(v̂) < eps is
    v < eps² · (1 - beta2^step): exact over every element from one pass over v. On the CPU that
    pass is the C++ kernel; elsewhere torch ops on the device, with no host synchronisation.
    """
    second, correction, eps, lr = adam_scalars(state, group)
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
        smallest, largest, below, zeros = extremes_and_count_below(second, level)
        extremes = _step_size_extremes(smallest, largest, correction, eps, lr)
        return AdamStepSizes(
            sample,
            torch.tensor(extremes, dtype=torch.float64) if sampled else None,
            torch.tensor(eps_share(below, zeros, second.numel()), dtype=torch.float64),
        )
    second_extremes, below, zeros = extremes_and_count_below_torch(second, level)
    return AdamStepSizes(
        sample,
        step_size(second_extremes) if sampled else None,
        (below - zeros).double() / (second.numel() - zeros),
    )


def eps_share(below: int, zeros: int, size: int) -> float:
    """The share of eps-dominated elements among those that ever had a gradient.

    An element whose second moment is exactly zero never got a gradient (an embedding row the
    batches never use, a frozen slice): Adam does not move it, eps or not, so it is left out;
    NaN when no element had a gradient.
    """
    return (below - zeros) / (size - zeros) if size > zeros else math.nan


def _step_size_extremes(
    smallest: float, largest: float, correction: float, eps: float, lr: float
) -> list[float]:
    """The smallest and largest step size, from the largest and smallest v (NaN for v < 0)."""
    return [
        lr / (math.sqrt(v / correction) + eps) if v >= 0 else math.nan for v in (largest, smallest)
    ]


def _sharded_step_sizes(
    second: torch.Tensor, correction: float, eps: float, lr: float | torch.Tensor
) -> AdamStepSizes:
    """Step sizes of a sharded DTensor (FSDP2) at every element; the scope reads it by shards.

    The eps dominance is the 0/1 mask, whose mean merged across ranks is the whole tensor's
    share (a mean of the shards' shares would weigh uneven shards equally); elements that never
    had a gradient (v = 0) are NaN in it, left out of the mean as :func:`eps_share` leaves them.
    """
    root = (second.float() / correction).sqrt_()
    dominance = (root < eps).float().masked_fill_(root == 0, math.nan)
    return AdamStepSizes(root.add_(eps).reciprocal_().mul_(lr), None, dominance)


def _state_tensors(state: dict, param: nn.Parameter) -> dict[str, torch.Tensor]:
    """The :data:`STATE_KEYS` tensors the optimizer keeps for `param`, shaped like it, detached."""
    return {
        key: value.detach()
        for key in STATE_KEYS
        if isinstance(value := state.get(key), torch.Tensor) and value.shape == param.shape
    }


def _host_float32(tensor: torch.Tensor) -> bool:
    """Whether the C++ step kernel reads `tensor` in place."""
    return (
        tensor.is_cpu
        and tensor.dtype == torch.float32
        and tensor.is_contiguous()
        and not is_distributed_tensor(tensor)
    )


def _ratio(numerator: float, denominator: float) -> float:
    """The quotient as a tensor division gives it (0/0 NaN, x/0 ±Inf)."""
    if denominator == 0:
        return math.nan if numerator == 0 or math.isnan(numerator) else math.inf
    return numerator / denominator


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
        owned = owned_parameters(context.modules, context.modules_wanting(*self.kinds))
        for name, params in owned.items():
            wanted = frozenset(context.wanted[name])
            for pname, param in params:
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
            state = self.optimizer.state.get(param) or {}
            if self._observe_on_host(name, site, param, before, state, groups[group], wanted):
                continue
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
            if "optimizer.state" in wanted and enabled(name, "optimizer.state"):
                for key, value in _state_tensors(state, param).items():
                    observe(name, "optimizer.state", f"{site}.{key}", value)
            if self._reads_step_sizes(name, state):
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

    def _reads_step_sizes(self, name: str, state: dict) -> bool:
        return (
            isinstance(self.optimizer, ADAM_LIKE)
            and "exp_avg_sq" in state
            and "step" in state
            and self.context.enabled(name, "optimizer.step_size")
        )

    def _observe_on_host(
        self,
        name: str,
        site: str,
        param: nn.Parameter,
        before: torch.Tensor | None,
        state: dict,
        group: dict,
        wanted: frozenset[str],
    ) -> bool:
        """Observe one parameter from one pass of the C++ kernel; False where it does not apply.

        It applies when every tensor read is a contiguous float32 CPU tensor and a summary is
        all the lenses read of the update and the state on this step (the step sizes' sample
        goes to ``observe`` as a tensor whatever they read of it).
        """
        suffices = self.context.summary_suffices
        if before is not None and not suffices(name, "optimizer.update"):
            return False
        states: dict[str, torch.Tensor] = {}
        if "optimizer.state" in wanted and self.context.enabled(name, "optimizer.state"):
            if not suffices(name, "optimizer.state"):
                return False
            states = _state_tensors(state, param)
        adam = adam_scalars(state, group) if self._reads_step_sizes(name, state) else None
        if adam is not None and not all(isinstance(x, float) for x in (adam.correction, adam.lr)):
            return False
        after = param.detach() if before is not None else None
        second = adam.second if adam is not None else None
        tensors = [t for t in (after, before, second, *states.values()) if t is not None]
        if not tensors or not all(_host_float32(t) for t in tensors):
            return False
        summarized = [t for t in states.values() if t is not second]
        update, state_summaries, adam_part = _core.summarize_step(
            param.numel(),
            None if after is None else to_dlpack(after),
            None if before is None else to_dlpack(before),
            [to_dlpack(t) for t in summarized],
            None if second is None else to_dlpack(second),
            *((adam.correction, adam.eps, adam.lr, adam.eps**2 * adam.correction) if adam else ()),
            *((sample_stride(second),) if second is not None else ()),
            max_threads=torch.get_num_threads(),
            team=TEAM,
        )
        observe_summary = self.context.observe_summary
        if update is not None:
            summary, update_norm, before_norm = update
            observe_summary(name, "optimizer.update", f"{site}.update", summary)
            ratio = summary_of_values([_ratio(update_norm, before_norm)])
            observe_summary(name, "optimizer.update", f"{site}.update_ratio", ratio)
        summary_of = dict(zip(map(id, summarized), state_summaries, strict=True))
        if adam_part is not None:
            summary_of[id(second)] = adam_part[0]
        for key, value in states.items():
            observe_summary(name, "optimizer.state", f"{site}.{key}", summary_of[id(value)])
        if adam is not None:
            second_summary, smallest, largest, below, sizes = adam_part
            self.context.observe(
                name, "optimizer.step_size", f"{site}.step_size", torch.from_numpy(sizes)
            )
            if len(sizes) < param.numel():  # else the sample's own extremes are exact
                extremes = _step_size_extremes(smallest, largest, *adam[1:])
                summary = summary_of_values(extremes)
                observe_summary(name, "optimizer.state", f"{site}.step_size_extremes", summary)
            zeros = second_summary.zeros
            dominance = summary_of_values([eps_share(below, zeros, param.numel())])
            observe_summary(name, "optimizer.state", f"{site}.eps_dominance", dominance)
        return True

    def remove(self) -> None:
        """Drop the snapshots (the scope owns the optimizer hooks)."""
        self._before.clear()
        self._snapshots.clear()
