"""The Scope: one object owns an observed run; :mod:`layerscope.run` holds its parts.

``Scope`` composes the parts and is the user's face of them: the plan of what each lens
observes on a step, the gatherers' hooks, the gate that admits observations into the step's
windows, the step clock, the records out (history, sinks, the distributed merge) and the
checkpoint glue. It adds no logic of its own beyond checking the user's arguments.
"""

from __future__ import annotations

import atexit
import copy
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from layerscope.checkpoint import scope_state
from layerscope.distributed import rank_and_size
from layerscope.docs import error_message
from layerscope.drift import own_parameters
from layerscope.gatherers import GatherContext
from layerscope.lenses import Lens
from layerscope.presets import default_lenses
from layerscope.records import Record
from layerscope.reduce.windows import WindowBuilder
from layerscope.run.clock import Clock
from layerscope.run.crew import Crew
from layerscope.run.gate import Gate
from layerscope.run.guard import Guard
from layerscope.run.output import Output
from layerscope.run.plan import Plan
from layerscope.run.state import load
from layerscope.sinks.base import GuardedSink, Sink
from layerscope.sinks.console import attach_line


class Scope:
    """Observes a model (and optimizer) while it trains; see :func:`watch`.

    Steps are counted by the optimizer's step post-hook when an optimizer is given, else by
    :meth:`step`. On each step a lens's schedule allows, the lens's sites are observed, reduced
    (C++ fused kernel on CPU, torch ops on the device elsewhere) and turned into records; every
    ``flush_every`` steps the records go to the sinks. :meth:`close` (or leaving the ``with``
    block) flushes and removes every hook, leaving the model exactly as it was.

    Example:
        >>> import torch, layerscope
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with layerscope.watch(model, optimizer=opt) as scope:
        ...     loss = model(torch.randn(16, 4)).pow(2).mean()
        ...     loss.backward()
        ...     opt.step()
        ...     scope.step(loss=loss)
        >>> any(r.site == "0:weight.grad" for r in scope.records())
        True
    """

    _clock: Clock  # set by _attach: every scope watch() returns has one

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        lenses: Sequence[Lens] | None = None,
        every: int = 1,
        logdir: str | None = None,
        sinks: Sequence[Sink] = (),
        flush_every: int = 10,
        history: int = 100_000,
    ) -> None:
        _check_arguments(model, optimizer, every, flush_every)
        self.model = model
        self.every = every
        self.flush_every = flush_every
        self.logdir = logdir
        chosen = default_lenses(optimizer is not None, every) if lenses is None else list(lenses)
        for lens in chosen:
            if not isinstance(lens, Lens):
                raise ValueError(f"layerscope.watch: lenses must be Lens objects, got {lens!r}")
        # A lens given by the user is configuration; its state (trackers, findings) belongs to
        # this run, so the same lens objects can watch another model or run afterwards.
        self.lenses: list[Lens] = [copy.deepcopy(lens) for lens in chosen]
        self.rank, self.world_size = rank_and_size()
        self._modules = modules = dict(model.named_modules())
        self._guard = guard = Guard()
        self._windows = windows = WindowBuilder()
        self._plan = plan = Plan(self.lenses, modules, every, guard)
        self._crew = crew = Crew(guard)
        self._gate = gate = Gate(modules, windows, guard, plan.site_failed, plan.failed)
        self._output = Output(
            windows,
            guard,
            plan,
            model=model,
            modules=modules,
            params=own_parameters(modules),
            history=history,
            world_size=self.world_size,
            replicated=crew.replicated,
            sharded=gate.sharded,
            flush_every=flush_every,
        )
        ref = weakref.ref(self)  # the parts call back through it: no cycle holds the scope
        self._output.remove_hooks = lambda: (s := ref()) is not None and s._remove_hooks()
        self._atexit = lambda: (s := ref()) is not None and s.close()
        try:
            self._attach(optimizer, sinks)
        except BaseException:
            # A watch() that fails leaves the model and optimizer exactly as they were.
            self._remove_hooks(quiet=True)  # the error that stopped watch() is the news
            raise
        atexit.register(self._atexit)

    def _attach(self, optimizer: torch.optim.Optimizer | None, sinks: Sequence[Sink]) -> None:
        """Install the gatherers and the step hooks, open the sinks and plan the first step."""
        plan, gate, crew, modules = self._plan, self._gate, self._crew, self._modules
        wanted = plan.wanted()
        context = GatherContext(
            modules=modules,
            wanted=wanted,
            observe=gate.observe,
            enabled=gate.enabled,
            optimizer=optimizer,
            lenses=plan.lenses_at(list(wanted)),
            summary_suffices=gate.summary_suffices,
            observe_summary=gate.observe_summary,
            summarized=crew.summarized,
            failed=crew.failed,
        )
        crew.install(context, self.model)
        clock = self._clock = Clock(
            self.model, self._windows, self._guard, plan, crew, gate, self._output.step_closed
        )
        passes_follow = clock.passes.follow
        plan.followers[:] = [gate.follow, lambda p: passes_follow(bool(p)), crew.follow]
        plan_stop, gate_follow, crew_stop = plan.stop, gate.follow, crew.stop

        def stop() -> None:  # the step pipeline broke: observe nothing more
            plan_stop()
            gate_follow({})
            crew_stop()

        self._guard.stop = stop
        if self.rank == 0:  # one writer per run
            tags = [lens.tag for lens in self.lenses]
            line = attach_line(self.model, plan.watched_modules(), tags, self.logdir, sinks)
            self._output.open_sinks(sinks, self.logdir, line)
        clock.start(context)

    # -- the user's calls ----------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """The step in progress: steps closed so far (see :meth:`align_step`)."""
        return self._clock.step_count

    @property
    def epoch_count(self) -> int:
        """The epoch the records of the step in progress carry (see :meth:`align_epoch`)."""
        return self._clock.epoch_count

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer whose steps count (see :meth:`attach_optimizer`), if any."""
        return self._clock.optimizer

    @property
    def sinks(self) -> list[GuardedSink]:
        """Where records go at each flush (on rank 0; empty on the other ranks)."""
        return self._output.sinks

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Mark the end of a training step, optionally recording its loss.

        With an optimizer the optimizer counts steps; then this only records the loss (for the
        step whose forward pass produced it, whether called before or after ``opt.step()``).
        """
        self._clock.step(loss)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Count steps with `optimizer` from now on, in place of the one given before.

        For an optimizer created anew mid-run (after unfreezing layers, say). An optimizer that
        steps over parameters the watched one holds is followed without this call, with a
        warning.

        Raises:
            ValueError: `optimizer` is not a ``torch.optim.Optimizer``.
        """
        _check_arguments(self.model, optimizer, self.every, self.flush_every)
        self._clock.attach_optimizer(optimizer)

    def observe_loss(self, loss: torch.Tensor | float) -> None:
        """Record a loss for the step in progress, the one the next optimizer step closes.

        For callers that know where the loss belongs (trainer callbacks), unlike :meth:`step`,
        which guesses from whether the model's forward ran since the last optimizer step.
        """
        self._clock.observe_loss(loss)

    def align_step(self, step: int) -> None:
        """Continue counting from ``step`` (a trainer resumed at that global step).

        Raises:
            ValueError: ``step`` is negative or not an integer.
        """
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"Scope.align_step: step must be a non-negative integer, got {step!r}")
        self._clock.align(step)

    def epoch(self) -> None:
        """Advance the epoch counter; records from now on carry the new epoch."""
        self._clock.epoch_count += 1

    def align_epoch(self, epoch: int) -> None:
        """Set the epoch counter to ``epoch`` (a trainer's own): records from now on carry it.

        For trainer callbacks that count epochs themselves; a loop of its own calls
        :meth:`epoch` at each epoch's end instead.

        Raises:
            ValueError: ``epoch`` is negative or not an integer.
        """
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(
                f"Scope.align_epoch: epoch must be a non-negative integer, got {epoch!r}"
            )
        self._clock.align(self._clock.step_count, epoch)

    def records(self) -> list[Record]:
        """The records of the run so far (on rank 0; thinned past ``history`` records)."""
        return self._output.records()

    def findings(self) -> list[Any]:
        """The health findings so far (:class:`layerscope.health.Finding`), oldest first."""
        self._output.emit_ready(collective=False)
        found = [f for lens in self.lenses if hasattr(lens, "findings") for f in lens.findings()]
        return sorted(found, key=lambda f: f.step)

    def to_pandas(self) -> Any:  # noqa: ANN401 - pandas is an optional extra
        """The records as a pandas DataFrame (needs the ``pandas`` extra)."""
        from layerscope.sinks.table import to_pandas

        return to_pandas(self._output.columns())

    def flush(self) -> None:
        """Turn pending observations into records and hand new records to the sinks.

        Under torch.distributed this is a collective: every rank must call it (steps and
        ``close()`` do so at the same points on every rank). It waits for the other ranks at
        most ``$LAYERSCOPE_DIST_TIMEOUT`` seconds (300): past that, this rank warns which rank is
        missing and stops observing, and training goes on.
        """
        self._output.flush(self.step_count, hold_last=False)

    def close(self, failed: bool = False) -> None:
        """Flush, close the sinks and remove every hook. Safe to call twice.

        Args:
            failed: training raised on this rank: close without the step in progress and
                without waiting for the other ranks (they would never come to the exchange;
                their next one fails within its timeout, naming this rank). Leaving the
                ``with`` block on an exception does this.
        """
        if self._guard.closed:
            return
        if failed:
            self._output.abandon_exchange()
        self._guard.closed = True
        self._gate.close()
        self._windows.discard_current()  # a step that never finished
        try:
            self._output.close(self.step_count)
        finally:
            self._remove_hooks()
            atexit.unregister(self._atexit)

    def _remove_hooks(self, quiet: bool = False) -> None:
        """Remove every hook layerscope installed on the model and the optimizer."""
        self._crew.remove(quiet)
        clock = getattr(self, "_clock", None)  # None when watch() failed before the clock
        if clock is not None:
            clock.remove()
        # The parts call each other back: nothing follows the plan any more, and the cycles
        # between them go, so the model is freed with the scope's last reference.
        self._plan.followers.clear()
        self._guard.stop = lambda: None

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue its curves: counters and lens states.

        It names the model's modules and the lenses, which :meth:`load_state_dict` checks.
        Local to this rank, never a collective, so that it may be called on rank 0 alone
        (the usual "save on rank 0"). Under torch.distributed the lens states hold the steps
        merged so far (up to the last flush); call :meth:`flush` on every rank first to
        include the steps since.
        """
        self._output.emit_ready(collective=False)
        return scope_state(self.step_count, self.epoch_count, list(self._modules), self.lenses)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s counters and lens states (same lenses, same order).

        Raises:
            ValueError: the state is not a scope's, or was saved from another model or with
                other lenses; the scope is then left as it was.
        """
        step, epoch = load(state, list(self._modules), self.lenses)
        self._clock.align(step, epoch)

    @property
    def force_torch_reducer(self) -> bool:
        """Reduce CPU tensors with the torch-op (device) path; tests compare the two."""
        return self._windows.force_torch

    @force_torch_reducer.setter
    def force_torch_reducer(self, value: bool) -> None:
        self._windows.force_torch = value


def _check_arguments(model: object, optimizer: object, every: object, flush_every: object) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(
            error_message(
                f"layerscope.watch: model must be a torch.nn.Module, got {type(model).__name__}",
                "bad-model",
            )
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            error_message(
                "layerscope.watch: optimizer must be a torch.optim.Optimizer, got "
                f"{type(optimizer).__name__}",
                "bad-optimizer",
            )
        )
    for name, value in (("every", every), ("flush_every", flush_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                error_message(
                    f"layerscope.watch: {name} must be a positive integer, got {value!r}",
                    "bad-option",
                )
            )


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    lenses: Sequence[Lens] | None = None,
    every: int = 1,
    logdir: str | None = None,
    sinks: Sequence[Sink] = (),
    flush_every: int = 10,
    history: int = 100_000,
) -> Scope:
    """Attach layerscope to `model` (and `optimizer`) in one line.

    Args:
        model: the module to observe; it is left exactly as it was after ``close()``.
        optimizer: when given, its steps count layerscope's steps and gradients are read at
            each ``optimizer.step()``.
        lenses: what to observe; ``None`` means :func:`layerscope.default_lenses`.
        every: observe every N-th step. The default lenses' slower schedules scale with it
            (parameters and optimizer state every 10·N-th step, distributions every 50·N-th);
            lenses given with an ``every`` or schedule of their own keep it.
        logdir: write a TensorBoard run there (needs the ``tensorboard`` extra).
        sinks: further sinks that receive the records at each flush.
        flush_every: hand records to the sinks every N steps (and on close). On a GPU values
            stay on the device until then: one device-to-host copy per flush.
        history: most records kept in memory for ``records()``; past it the oldest steps are
            thinned (sinks still receive every record).

    Returns:
        The :class:`Scope`; use it as a context manager or call ``close()``.

    Raises:
        ValueError: a non-Module, a lens selecting no module, a bad option.
    """
    return Scope(model, optimizer, lenses, every, logdir, sinks, flush_every, history)
