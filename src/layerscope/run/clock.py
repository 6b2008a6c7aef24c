"""The step clock: which step an observation, a loss and an epoch belong to.

With an optimizer its step hooks count the steps (and a global optimizer hook follows an
optimizer created anew over the watched parameters); without one :meth:`Clock.step` does. A
loss reported after ``opt.step()`` joins the step the optimizer just closed. Passes that did not
count (a forward that raised, a step the optimizer skipped) are dropped from the step's
windows by the :class:`~layerscope.passes.PassTracker` the clock drives.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from layerscope.gatherers import GatherContext
from layerscope.passes import PassTracker
from layerscope.reduce.windows import WindowBuilder
from layerscope.run.crew import Crew
from layerscope.run.gate import LOSS, Gate
from layerscope.run.guard import Guard
from layerscope.run.plan import Plan

log = logging.getLogger("layerscope")


class Clock:
    """Counts a run's steps and epochs and closes each step's windows.

    Args:
        model: the observed model (its root gets a forward pre-hook).
        windows: the step's windows, closed at each step.
        guard, plan, crew, gate: the run's other parts.
        step_closed: called with the new step count after each step closed (records out).

    Attributes:
        step_count: the step in progress (steps closed so far).
        epoch_count: the epoch records of the step in progress carry.
        optimizer: the optimizer whose steps count, if any.
        passes: keeps passes that did not count out of the step.
    """

    def __init__(
        self,
        model: nn.Module,
        windows: WindowBuilder,
        guard: Guard,
        plan: Plan,
        crew: Crew,
        gate: Gate,
        step_closed: Callable[[int], None],
    ) -> None:
        self.step_count = 0
        self.epoch_count = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._windows, self._guard, self._plan, self._crew, self._gate = (
            windows,
            guard,
            plan,
            crew,
            gate,
        )
        self._step_closed = step_closed
        self._forward_since_step = False
        self._closed_step_reads_loss = False  # whether a late loss has a step to join
        self._context: GatherContext | None = None
        self._handles: list[Any] = []
        self._optimizer_handles: list[Any] = []
        self._global_hook: Any = None
        self._watched_params: set[int] = set()
        self._other_optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        self._handles.append(model.register_forward_pre_hook(self._mark_forward))
        self.passes = PassTracker(model, windows)

    def start(self, context: GatherContext) -> None:
        """Count the steps of ``context.optimizer`` (if any) and plan the first step."""
        self._context = context
        if context.optimizer is not None:
            self._hook_optimizer(context.optimizer)
        self.replan()

    def replan(self, afresh: bool = False) -> None:
        """Follow the plan of the step in progress (after a boundary or a jump)."""
        dropped = self._crew.drop_failed()
        self._plan.follow_step(self.step_count, afresh or dropped)

    # -- the user's calls ----------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float | None) -> None:
        """See :meth:`layerscope.Scope.step`."""
        if self._guard.closed or self._guard.broken:
            return
        if self.optimizer is None:
            if loss is not None:
                self._gate.observe_loss(loss)
            self._take_step()
        elif loss is not None:
            if self._forward_since_step or self.step_count == 0:
                self._gate.observe_loss(loss)
            elif self._closed_step_reads_loss:  # the optimizer closed the step it belongs to
                self._gate.late_loss(loss, self.step_count - 1, self.epoch_count)

    def observe_loss(self, loss: torch.Tensor | float) -> None:
        """See :meth:`layerscope.Scope.observe_loss`."""
        if not self._guard.closed and not self._guard.broken:
            self._gate.observe_loss(loss)

    def align(self, step: int, epoch: int | None = None) -> None:
        """Continue counting from `step` (and `epoch`, when given)."""
        if epoch is not None:
            self.epoch_count = epoch
        if step != self.step_count:
            self.step_count = step
            self.replan()

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Count `optimizer`'s steps from now on, in place of the one before."""
        if self._guard.closed or optimizer is self.optimizer:
            return
        for handle in self._optimizer_handles:
            handle.remove()
        context = self._context
        assert context is not None  # set until close
        self.optimizer = context.optimizer = optimizer
        self._hook_optimizer(optimizer)
        self._crew.renew_optimizer(context)  # it maps the optimizer's parameters
        self.replan(afresh=True)  # the gatherers follow the plan afresh

    def _hook_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._optimizer_handles = [
            optimizer.register_step_pre_hook(self._optimizer_pre_step),
            optimizer.register_step_post_hook(self._optimizer_post_step),
        ]
        self._watched_params = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if self._global_hook is None:
            # Every optimizer's step passes here first: one that replaced the watched one is
            # found before its own step hooks run, so its first step is counted already.
            ref = weakref.ref(self)

            def any_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:  # noqa: ANN401
                clock = ref()
                if clock is not None and opt is not clock.optimizer:
                    clock._other_optimizer_step(opt)

            self._global_hook = register_optimizer_step_pre_hook(any_step)
            self._handles.append(self._global_hook)

    def _other_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Follow an optimizer that steps the watched parameters: the watched one was replaced."""
        guard = self._guard
        if guard.closed or guard.broken or optimizer in self._other_optimizers:
            return
        try:
            groups = optimizer.param_groups
            if not any(id(p) in self._watched_params for g in groups for p in g["params"]):
                self._other_optimizers.add(optimizer)  # another model's, or other parameters
                return
            warnings.warn(
                f"layerscope: a new {type(optimizer).__name__} steps the watched parameters, "
                f"from step {self.step_count}; layerscope counts its steps from now on. After "
                "creating an optimizer anew, call scope.attach_optimizer(opt) to say so",
                RuntimeWarning,
                stacklevel=4,
            )
            self.attach_optimizer(optimizer)
        except Exception as error:  # noqa: BLE001 - layerscope must never kill training
            guard.warn_once("following a new optimizer", error, "its steps are not counted")

    # -- steps ---------------------------------------------------------------------------------
    def _mark_forward(self, module: nn.Module, args: Any) -> None:  # noqa: ANN401
        if torch.is_grad_enabled() and not self._guard.broken:
            self._forward_since_step = True
            self._guard.contained(
                "PassTracker.forward_begins", self._say_lost, self.passes.forward_begins
            )

    def _say_lost(self, what: Any) -> None:  # noqa: ANN401
        """Say what a pass that did not count cost: ``what()`` gives (why, sites dropped)."""
        lost = what()
        if lost is None or not lost[1]:
            return
        why, sites = lost
        message = (
            f"layerscope: {why}; the observations it made ({len(sites)} sites) are dropped, "
            f"not counted into step {self.step_count}"
        )
        if why.startswith("a forward"):  # an exception the loop caught: rare, so said loudly
            if self._guard.first(why):
                warnings.warn(message + " (said once)", RuntimeWarning, stacklevel=4)
        else:  # GradScaler skips steps routinely
            log.info(message)

    def _optimizer_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> Any:  # noqa: ANN401
        # torch passes the step's own arguments: (optimizer, closure?) and keyword arguments.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        self._guard.contained("PassTracker.step_begins", self._say_lost, self.passes.step_begins)
        if not callable(closure):
            self._crew.at_boundary("before_step")
            return None
        # ``opt.step(closure)`` (LBFGS, Lightning) computes the gradients inside the step, after
        # this hook: read them when the closure has run the first time.
        done = False
        at_boundary = self._crew.at_boundary

        def observed_closure() -> Any:  # noqa: ANN401
            nonlocal done
            result = closure()
            if not done:
                done = True
                at_boundary("before_step")
            return result

        rest = {k: v for k, v in kwargs.items() if k != "closure"}
        return args[:1], {**rest, "closure": observed_closure}

    def _optimizer_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:  # noqa: ANN401
        self._crew.at_boundary("after_step")
        self._finish_step()

    def _take_step(self) -> None:
        self._guard.contained("PassTracker.step_begins", self._say_lost, self.passes.step_begins)
        self._crew.at_boundary("before_step")
        self._finish_step()

    def _finish_step(self) -> None:
        guard = self._guard
        if guard.broken:
            return
        self._closed_step_reads_loss = LOSS in self._plan.active
        step, epoch = self.step_count, self.epoch_count
        if not guard.contained("WindowBuilder.close_step", self._windows.close_step, step, epoch):
            return
        self.step_count += 1
        self._forward_since_step = False
        self.passes.step_closed()
        self.replan()
        # The step just closed waits for the next one: a loss reported after the optimizer step
        # (the usual order) still joins it, so that each step is emitted once, whole.
        self._step_closed(self.step_count)

    def remove(self) -> None:
        """Remove the clock's hooks (and the pass tracker's)."""
        self._context = None  # its callbacks hold the other parts
        self.passes.remove()
        for handle in (*self._handles, *self._optimizer_handles):
            handle.remove()
        self._handles.clear()
        self._optimizer_handles.clear()
