"""The Scope: one object owns an observed run — hooks, steps, lenses, records and sinks."""

from __future__ import annotations

import atexit
import copy
import logging
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from layerscope.checkpoint import lens_states, scope_state
from layerscope.distributed import (
    Exchange,
    RankMissing,
    check_parameters_readable,
    local_part,
    merge_to_rank0,
    rank_and_size,
)
from layerscope.docs import error_message
from layerscope.drift import changes_since_watch, own_parameters
from layerscope.gatherers import GATHERERS, GatherContext, Gatherer, OptimizerGatherer
from layerscope.history import RecordHistory
from layerscope.lenses import EmitContext, Lens
from layerscope.lenses.builtin import RELU_LIKE
from layerscope.observation import is_distributed_tensor, readable_reason
from layerscope.passes import PassTracker
from layerscope.presets import default_lenses
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow
from layerscope.reduce.windows import StepWindows, WindowBuilder
from layerscope.sinks.base import GuardedSink, Sink
from layerscope.sinks.console import LogSink, attach_line
from layerscope.stats.site_summary import SiteSummary
from layerscope.units import unit_axes, unit_axis

log = logging.getLogger("layerscope")


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
        self.optimizer = optimizer
        self.every = every
        self.flush_every = flush_every
        chosen = default_lenses(optimizer is not None, every) if lenses is None else list(lenses)
        for lens in chosen:
            if not isinstance(lens, Lens):
                raise ValueError(f"layerscope.watch: lenses must be Lens objects, got {lens!r}")
        # A lens given by the user is configuration; its state (trackers, findings) belongs to
        # this run, so the same lens objects can watch another model or run afterwards.
        self.lenses: list[Lens] = [copy.deepcopy(lens) for lens in chosen]
        self._modules = dict(model.named_modules())
        self._params = own_parameters(self._modules)
        self._order = {name: i for i, name in enumerate(self._modules)}
        self._axes = unit_axes(self._modules)
        #: lens id -> module name -> the kinds it reads there
        self._kinds_at = {
            id(lens): lens.kinds_by_module(self._modules.items()) for lens in self.lenses
        }
        self._schedules = [(lens.first, lens.every or every, lens.schedule) for lens in self.lenses]
        self.rank, self.world_size = rank_and_size()
        # None on one process, and once this rank has left the exchange (a rank went missing).
        self._exchange = Exchange() if self.world_size > 1 else None

        self.step_count = 0
        self.epoch_count = 0
        self._history = RecordHistory(history)
        self._unflushed: list[Record] = []
        self._windows = WindowBuilder()
        self._active: dict[tuple[str, str], Needs] = {}  # the current step's plan
        self._plans: dict[tuple[int, ...], dict[tuple[str, str], Needs]] = {}
        # The sites of a step's windows (in order) -> the sites each lens reads of them.
        self._lens_sites: dict[tuple[str, ...], dict[int, tuple[str, ...]]] = {}
        # Only lenses that override review() judge a step: the others need no copy of its records.
        self._reviewers = {id(lens) for lens in self.lenses if type(lens).review is not Lens.review}
        self._failed: set[tuple[str, str]] = set()  # sites a statistic could not read
        self._forward_since_step = False
        self._closed_step_reads_loss = False  # whether a late loss has a step to join
        self._notes: set[str] = set()
        self._closed = False
        self._broken = False  # a part of the step pipeline failed: observation has stopped
        self._keep_history = True
        self._dropped: list[Gatherer] = []  # gatherers whose hooks failed, removed at a boundary

        self._gatherers: list[Gatherer] = []
        self._busy: list[Gatherer] = []  # those with something to observe on this step
        self._handles: list[Any] = []
        self._optimizer_handles: list[Any] = []
        self._global_hook: Any = None
        self._passes: PassTracker | None = None
        self._context: GatherContext | None = None
        self._watched_params: set[int] = set()
        self._other_optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        self.sinks: list[GuardedSink] = []
        self.logdir = logdir
        try:
            self._attach(sinks)
        except BaseException:
            # A watch() that fails leaves the model and optimizer exactly as they were.
            self._remove_hooks(quiet=True)  # the error that stopped watch() is the news
            raise
        ref = weakref.ref(self)
        self._atexit = lambda: (s := ref()) is not None and s.close()
        atexit.register(self._atexit)

    def _attach(self, sinks: Sequence[Sink]) -> None:
        """Install the gatherers and the step hooks, and open the sinks."""
        self._install_gatherers()
        self._handles.append(self.model.register_forward_pre_hook(self._mark_forward))
        self._passes = PassTracker(self.model, self._windows)
        if self.optimizer is not None:
            self._hook_optimizer(self.optimizer)
        if self.rank == 0:  # one writer per run
            self.sinks = [GuardedSink(s) for s in sinks]
            if self.logdir is not None:
                from layerscope.sinks.tensorboard import TensorBoardSink

                self.sinks.insert(0, GuardedSink(TensorBoardSink(self.logdir)))
            log_sink = LogSink()  # findings and the attach line go to the log unless turned off
            self.sinks.append(GuardedSink(log_sink))
            watched = {
                m
                for at in self._kinds_at.values()
                for m, k in at.items()
                if k != ("loss",) and (m or len(self._modules) == 1)
            }
            log_sink.attached(
                attach_line(
                    self.model, len(watched), [x.tag for x in self.lenses], self.logdir, sinks
                )
            )
        self._plan_step()

    def _install_gatherers(self) -> None:
        wanted: dict[str, set[str]] = {}
        for lens in self.lenses:
            for name, kinds in self._kinds_at[id(lens)].items():
                wanted.setdefault(name, set()).update(kinds)
        known = {"loss", *(kind for g in GATHERERS for kind in g.kinds)}
        for lens in self.lenses:
            for kind in lens.kinds:
                if kind not in known:
                    raise ValueError(
                        error_message(
                            f"{lens!r} reads site kind {kind!r}, which no gatherer produces; "
                            f"known kinds: {', '.join(sorted(known))}",
                            "unknown-kind",
                        )
                    )
        context = self._context = GatherContext(
            modules=self._modules,
            wanted=wanted,
            observe=self._observe,
            enabled=self._enabled,
            optimizer=self.optimizer,
            lenses={
                name: [lens for lens in self.lenses if name in self._kinds_at[id(lens)]]
                for name in wanted
            },
            summary_suffices=self._summary_suffices,
            observe_summary=self._observe_summary,
            failed=self._gatherer_failed,
        )
        every_kind = {kind for kinds in wanted.values() for kind in kinds}
        check_parameters_readable(
            self.model, every_kind & {k for g in GATHERERS if g.replicated for k in g.kinds}
        )
        self._sharded: set[str] = set()  # sites of DTensors: merged across ranks
        for kind in GATHERERS:
            if every_kind & set(kind.kinds):
                # Listed before its hooks go in, so that a failure further on removes them.
                gatherer = kind.__new__(kind)
                self._gatherers.append(gatherer)
                gatherer.__init__(context)  # type: ignore[misc]
        self._replicated = {k for g in self._gatherers if g.replicated for k in g.kinds}

    # -- the user's calls ----------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Mark the end of a training step, optionally recording its loss.

        With an optimizer the optimizer counts steps; then this only records the loss (for the
        step whose forward pass produced it, whether called before or after ``opt.step()``).
        """
        if self._closed or self._broken:
            return
        if self.optimizer is None:
            if loss is not None:
                self._observe_loss(loss)
            self._take_step()
        elif loss is not None:
            if self._forward_since_step or self.step_count == 0:
                self._observe_loss(loss)
            else:  # the optimizer already closed the step this loss belongs to
                self._late_loss(loss)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Count steps with `optimizer` from now on, in place of the one given before.

        For an optimizer created anew mid-run (after unfreezing layers, say). An optimizer that
        steps over parameters the watched one holds is followed without this call, with a
        warning.

        Raises:
            ValueError: `optimizer` is not a ``torch.optim.Optimizer``.
        """
        _check_arguments(self.model, optimizer, self.every, self.flush_every)
        if self._closed or optimizer is self.optimizer:
            return
        for handle in self._optimizer_handles:
            handle.remove()
        context = self._context
        assert context is not None  # set until close
        self.optimizer = context.optimizer = optimizer
        self._hook_optimizer(optimizer)
        for i, gatherer in enumerate(self._gatherers):
            if isinstance(gatherer, OptimizerGatherer):  # it maps the optimizer's parameters
                gatherer.remove()
                self._gatherers[i] = OptimizerGatherer(context)
        self._active = {}  # the gatherers follow the plan afresh
        self._plan_step()

    def _hook_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
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
                scope = ref()
                if scope is not None and opt is not scope.optimizer:
                    scope._other_optimizer_step(opt)

            self._global_hook = register_optimizer_step_pre_hook(any_step)
            self._handles.append(self._global_hook)

    def _other_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Follow an optimizer that steps the watched parameters: the watched one was replaced."""
        if self._closed or self._broken or optimizer in self._other_optimizers:
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
            self._warn_once("following a new optimizer", error, "its steps are not counted")

    def observe_loss(self, loss: torch.Tensor | float) -> None:
        """Record a loss for the step in progress, the one the next optimizer step closes.

        For callers that know where the loss belongs (trainer callbacks), unlike :meth:`step`,
        which guesses from whether the model's forward ran since the last optimizer step.
        """
        if not self._closed:
            self._observe_loss(loss)

    def align_step(self, step: int) -> None:
        """Continue counting from ``step`` (a trainer resumed at that global step).

        Raises:
            ValueError: ``step`` is negative or not an integer.
        """
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"Scope.align_step: step must be a non-negative integer, got {step!r}")
        if step != self.step_count:
            self.step_count = step
            self._plan_step()

    def epoch(self) -> None:
        """Advance the epoch counter; records from now on carry the new epoch."""
        self.epoch_count += 1

    def records(self) -> list[Record]:
        """The records of the run so far (on rank 0; thinned past ``history`` records)."""
        self._emit_ready(collective=False)
        return list(self._history)

    def findings(self) -> list[Any]:
        """The health findings so far (:class:`layerscope.health.Finding`), oldest first."""
        self._emit_ready(collective=False)
        found = [f for lens in self.lenses if hasattr(lens, "findings") for f in lens.findings()]
        return sorted(found, key=lambda f: f.step)

    def to_pandas(self) -> Any:  # noqa: ANN401 - pandas is an optional extra
        """The records as a pandas DataFrame (needs the ``pandas`` extra)."""
        from layerscope.sinks.table import to_pandas

        return to_pandas(self.records())

    def flush(self) -> None:
        """Turn pending observations into records and hand new records to the sinks.

        Under torch.distributed this is a collective: every rank must call it (steps and
        ``close()`` do so at the same points on every rank). It waits for the other ranks at
        most ``$LAYERSCOPE_DIST_TIMEOUT`` seconds (300): past that, this rank warns which rank is
        missing and stops observing, and training goes on.
        """
        self._flush(hold_last=False)

    def _flush(self, hold_last: bool) -> None:
        if "model changed" not in self._notes and not self._closed:
            self._check_modules()
        self._emit_ready(collective=True, hold_last=hold_last)
        batch, self._unflushed = self._unflushed, []
        if batch:
            for sink in self.sinks:  # queued everywhere first: a Ctrl-C in one write loses none
                sink.queue(batch)
            for sink in self.sinks:
                sink.drain()

    def _check_modules(self) -> None:
        """Warn once when modules or parameters changed since watch(): they go unobserved."""
        changes = changes_since_watch(self.model, self._modules, self._params)
        if changes is not None:
            self._notes.add("model changed")
            warnings.warn(
                f"layerscope: the model's modules changed after watch() ({changes}); new "
                "modules and parameters are not observed and replaced ones are no longer seen. "
                "Close this scope and watch the model again",
                RuntimeWarning,
                stacklevel=4,
            )

    def close(self) -> None:
        """Flush, close the sinks and remove every hook. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._windows.discard_current()  # a step that never finished
        try:
            self.flush()
            # No rank tears down its process group while a gather other ranks read is in flight.
            if self._exchange is not None:
                self._exchange.barrier("close")
                self._exchange.close()
        except RankMissing as error:
            self._leave_exchange(str(error))
        finally:
            for sink in self.sinks:
                sink.close()
            self._remove_hooks()
            atexit.unregister(self._atexit)

    def _remove_hooks(self, quiet: bool = False) -> None:
        """Remove every hook layerscope installed on the model and the optimizer."""
        for gatherer in self._gatherers:
            try:
                gatherer.remove()
            except Exception as error:  # noqa: BLE001 - the other hooks must go all the same
                if not quiet:
                    self._warn_once(
                        f"{type(gatherer).__name__}.remove", error, "its hooks may remain"
                    )
        # Gatherers call back into the scope: dropping them breaks that reference cycle, so
        # the scope (and the model it holds) is freed with its last reference, not by the
        # cycle collector late in interpreter shutdown, after torch.distributed has gone.
        self._gatherers = []
        self._busy = []
        self._context = None  # its callbacks are the scope's: another cycle
        if self._passes is not None:
            self._passes.remove()
        for handle in (*self._handles, *self._optimizer_handles):
            handle.remove()
        self._handles.clear()
        self._optimizer_handles.clear()

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._abandon_exchange()
        self.close()

    def _leave_exchange(self, message: str) -> None:
        """A rank went missing: warn, stop exchanging and observing; training goes on."""
        if self._exchange is None:
            return
        self._exchange = None
        self._remove_hooks()
        warnings.warn(
            f"{message}. layerscope stops observing on this rank; the records merged so far "
            "stay (scope.records(), the sinks).",
            RuntimeWarning,
            stacklevel=3,
        )

    def _abandon_exchange(self) -> None:
        """Training raised on this rank: close without waiting for ranks that will not come.

        The other ranks' next exchange then fails within their timeout, naming this rank.
        """
        self._exchange = None
        self._windows.discard_current()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue its curves: counters and lens states.

        It names the model's modules and the lenses, which :meth:`load_state_dict` checks.
        Local to this rank, never a collective, so that it may be called on rank 0 alone
        (the usual "save on rank 0"). Under torch.distributed the lens states hold the steps
        merged so far (up to the last flush); call :meth:`flush` on every rank first to
        include the steps since.
        """
        self._emit_ready(collective=False)
        return scope_state(self.step_count, self.epoch_count, list(self._modules), self.lenses)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s counters and lens states (same lenses, same order).

        Raises:
            ValueError: the state is not a scope's, or was saved from another model or with
                other lenses; the scope is then left as it was.
        """
        step, epoch, saved = lens_states(state, list(self._modules), self.lenses)
        previous = [lens.state_dict() for lens in self.lenses]
        for i, (lens, lens_state) in enumerate(zip(self.lenses, saved, strict=True)):
            try:
                lens.load_state_dict(lens_state)
            except Exception as error:
                for earlier, before in zip(self.lenses[: i + 1], previous, strict=False):
                    earlier.load_state_dict(before)
                raise ValueError(
                    f"Scope.load_state_dict: the state of lens {i} ({lens!r}) does not load: "
                    f"{error!r}"
                ) from error
        self.step_count = step
        self.epoch_count = epoch
        self._plan_step()

    # -- steps ---------------------------------------------------------------------------------
    def _mark_forward(self, module: nn.Module, args: Any) -> None:  # noqa: ANN401
        if torch.is_grad_enabled() and not self._broken:
            self._forward_since_step = True
            self._contained(
                "PassTracker.forward_begins", self._say_lost, self._passes.forward_begins
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
            if why not in self._notes:
                self._notes.add(why)
                warnings.warn(message + " (said once)", RuntimeWarning, stacklevel=4)
        else:  # GradScaler skips steps routinely
            log.info(message)

    def _optimizer_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> Any:  # noqa: ANN401
        # torch passes the step's own arguments: (optimizer, closure?) and keyword arguments.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        self._contained("PassTracker.step_begins", self._say_lost, self._passes.step_begins)
        if not callable(closure):
            self._at_boundary("before_step")
            return None
        # ``opt.step(closure)`` (LBFGS, Lightning) computes the gradients inside the step, after
        # this hook: read them when the closure has run the first time.
        done = False

        def observed_closure() -> Any:  # noqa: ANN401
            nonlocal done
            result = closure()
            if not done:
                done = True
                self._at_boundary("before_step")
            return result

        rest = {k: v for k, v in kwargs.items() if k != "closure"}
        return args[:1], {**rest, "closure": observed_closure}

    def _optimizer_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:  # noqa: ANN401
        self._at_boundary("after_step")
        self._finish_step()

    def _take_step(self) -> None:
        self._contained("PassTracker.step_begins", self._say_lost, self._passes.step_begins)
        self._at_boundary("before_step")
        self._finish_step()

    def _at_boundary(self, what: str) -> None:
        """Call each busy gatherer's ``before_step`` or ``after_step``, each one contained."""
        for gatherer in self._busy:
            if not gatherer.failed:
                try:
                    getattr(gatherer, what)()
                except Exception as error:  # noqa: BLE001 - a gatherer must never kill training
                    gatherer.failed = True
                    self._gatherer_failed(gatherer, what, error)

    def _gatherer_failed(self, gatherer: Gatherer, where: str, error: Exception) -> None:
        """A gatherer's hook raised: warn once; its hooks go at the next step boundary.

        Not at once: the failing hook may be running inside torch's iteration over hooks.
        """
        self._warn_once(
            f"{type(gatherer).__name__}.{where}",
            error,
            f"the gatherer is disabled (its sites {', '.join(gatherer.kinds)} are no longer "
            "observed)",
        )
        self._dropped.append(gatherer)

    def _drop_failed_gatherers(self) -> None:
        dropped, self._dropped = self._dropped, []
        for gatherer in dropped:
            try:
                gatherer.remove()
            except Exception:  # noqa: BLE001, S110 - its hooks are inert already (failed)
                pass
        self._gatherers = [g for g in self._gatherers if not g.failed]
        self._busy = [g for g in self._busy if not g.failed]

    def _warn_once(self, part: str, error: Exception, consequence: str) -> None:
        """Say once, loudly, that `part` of layerscope failed and what it costs the run."""
        if part not in self._notes:
            self._notes.add(part)
            warnings.warn(
                f"layerscope: {part} failed ({error!r}); {consequence}; training goes on",
                RuntimeWarning,
                stacklevel=3,
            )

    def _contained(self, part: str, call: Any, *args: Any) -> bool:  # noqa: ANN401
        """Run a part of the step pipeline; if it raises, observation stops for the run.

        Records emitted before still reach the sinks and ``records()``.
        """
        try:
            call(*args)
        except Exception as error:  # noqa: BLE001 - layerscope must never kill training
            self._broken = True
            self._warn_once(part, error, "layerscope stops observing this run")
            self._active, self._busy = {}, []
            for gatherer in self._gatherers:
                try:
                    gatherer.follow(self._active)
                except Exception:  # noqa: BLE001, S110 - stopping anyway
                    pass
            return False
        return True

    def _plan_step(self) -> None:
        """Work out which (module, kind) pairs the lenses active on this step observe.

        A plan depends only on which lenses are active, so each combination is worked out once;
        the gatherers hear of it when it changes, and only those with work in it act at the
        step boundary.
        """
        if self._dropped:
            self._drop_failed_gatherers()
        if self._broken:
            return
        active = self._active_lenses(self.step_count)
        plan = self._plans.get(active)
        if plan is None:
            plan = self._plans[active] = {}
            for lens in (self.lenses[i] for i in active):
                for name, kinds in self._kinds_at[id(lens)].items():
                    for kind in kinds:
                        key = (name, kind)
                        if key not in self._failed:
                            plan[key] = plan.get(key, Needs()) | lens.needs_at(name, kind)
        if plan is not self._active:
            self._active = plan
            kinds = {kind for _, kind in plan}
            self._busy = [g for g in self._gatherers if kinds.intersection(g.kinds)]
            if self._passes is not None:
                self._passes.follow(bool(plan))
            for gatherer in self._gatherers:
                try:
                    gatherer.follow(plan)
                except Exception as error:  # noqa: BLE001 - a gatherer must never kill training
                    gatherer.failed = True
                    self._gatherer_failed(gatherer, "follow", error)

    def _active_lenses(self, step: int) -> tuple[int, ...]:
        """Indices of the lenses that observe `step` (:meth:`Lens.active`, without a call each)."""
        return tuple(
            i
            for i, (first, every, schedule) in enumerate(self._schedules)
            if (schedule(step) if schedule else step < first or step % every == 0)
        )

    def _enabled(self, module: str, kind: str) -> bool:
        return (module, kind) in self._active

    def _finish_step(self) -> None:
        if self._broken:
            return
        self._closed_step_reads_loss = ("", "loss") in self._active
        step, epoch = self.step_count, self.epoch_count
        if not self._contained("WindowBuilder.close_step", self._windows.close_step, step, epoch):
            return
        self.step_count += 1
        self._forward_since_step = False
        self._passes.step_closed()
        self._plan_step()
        # The step just closed waits for the next one: a loss reported after the optimizer step
        # (the usual order) still joins it, so that each step is emitted once, whole.
        if self.step_count % self.flush_every == 0:
            self._flush(hold_last=True)
        elif self.world_size == 1 and not self._windows.has_device_work:
            self._emit_ready(collective=False, hold_last=True)  # host values: no need to wait

    # -- observing -----------------------------------------------------------------------------
    def _observe(
        self,
        module: str,
        kind: str,
        site: str,
        tensor: torch.Tensor,
        count: Any = None,  # noqa: ANN401
    ) -> None:
        needs = self._active.get((module, kind))
        if needs is None or self._closed:
            return
        readable = self._readable(module, site, tensor, needs.activity)
        if readable is None:
            return
        tensor, axis = readable
        relu_like = kind == "output" and isinstance(self._modules.get(module), RELU_LIKE)
        try:
            threshold = 0.0 if relu_like else None
            self._windows.add(module, kind, site, tensor, needs, axis, threshold, count)
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            self._site_failed(module, kind, site, error)

    def _readable(
        self, module: str, site: str, tensor: torch.Tensor, activity: bool
    ) -> tuple[torch.Tensor, int | None] | None:
        """The part of `tensor` this rank reduces and its unit axis; None to skip it (noted)."""
        reason = readable_reason(tensor)
        if reason is not None:
            if site not in self._notes:
                self._notes.add(site)
                log.info("layerscope: skipping site %s: a statistic cannot read %s", site, reason)
            return None
        if tensor.numel() == 0:
            return None
        axis = unit_axis(self._axes.get(module), tensor) if activity else None
        if is_distributed_tensor(tensor):  # FSDP2: this rank reduces its shard
            self._sharded.add(site)
            tensor, axis = local_part(tensor, axis)
            if tensor is None or tensor.numel() == 0:
                return None
        return tensor, axis

    def _site_failed(self, module: str, kind: str, site: str, error: Exception) -> None:
        """A site could not be reduced: warn once and observe it no more."""
        if site not in self._notes:
            self._notes.add(site)
            warnings.warn(
                f"layerscope: could not reduce site {site} ({error!r}); it is skipped from now on",
                RuntimeWarning,
                stacklevel=3,
            )
        self._failed.add((module, kind))
        for plan in self._plans.values():
            plan.pop((module, kind), None)

    def _summary_suffices(self, module: str, kind: str) -> bool:
        needs = self._active.get((module, kind))
        return needs == Needs() and not self._closed and not self._windows.force_torch

    def _observe_summary(self, module: str, kind: str, site: str, summary: SiteSummary) -> None:
        """Take a summary a gatherer reduced on the host (after :meth:`_summary_suffices`)."""
        if (module, kind) in self._active and not self._closed and summary.size:
            self._windows.add_summary(module, kind, site, summary)

    def _observe_loss(self, loss: torch.Tensor | float) -> None:
        if ("", "loss") not in self._active or self._broken:
            return
        try:
            tensor = _loss_tensor(loss)
        except Exception as error:  # noqa: BLE001 - a loss layerscope cannot read is skipped
            self._site_failed("", "loss", "loss", error)
            return
        self._observe("", "loss", "loss", tensor)

    def _late_loss(self, loss: torch.Tensor | float) -> None:
        """Record a loss for the step the optimizer just closed."""
        if not self._closed_step_reads_loss or self._broken or ("", "loss") in self._failed:
            return
        step = self.step_count - 1
        try:
            readable = self._readable("", "loss", _loss_tensor(loss), False)
            if readable is not None:
                self._windows.add_to_closed(
                    step, self.epoch_count, "", "loss", "loss", readable[0], Needs()
                )
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            self._site_failed("", "loss", "loss", error)

    # -- windows and records -------------------------------------------------------------------
    def _emit_ready(self, collective: bool, hold_last: bool = False) -> None:
        """Records for every closed step; across ranks only at a collective flush."""
        if (self.world_size > 1 and not collective) or "WindowBuilder.ready" in self._notes:
            return  # (steps closed before a failure elsewhere are still handed out)
        steps: list[StepWindows] = []
        if not self._contained(
            "WindowBuilder.ready", lambda: steps.extend(self._windows.ready(hold_last))
        ):
            return
        if self.world_size > 1:
            if self._exchange is None:  # this rank left the exchange: nothing can be merged
                return
            try:
                steps = merge_to_rank0(
                    steps,
                    self._replicated,
                    self._sharded,
                    self._exchange,
                    f"step {self.step_count}",
                )
            except RankMissing as error:
                self._leave_exchange(str(error))
                return
        for step_windows in steps:
            self._emit(step_windows)

    def _emit(self, sw: StepWindows) -> None:
        ctx = EmitContext(
            step=sw.step, epoch=sw.epoch, windows=sw.windows, module_order=self._order
        )
        active = [self.lenses[i] for i in self._active_lenses(sw.step)]
        lens_sites = self._sites_per_lens(sw.windows)
        emitted: list[Record] = []
        for lens in active:
            emitted.extend(self._guarded(lens, lens.emit, ctx, lens_sites[id(lens)]))
        for lens in active:  # lenses that judge the step as a whole read every lens's records
            if id(lens) in self._reviewers:
                emitted.extend(self._guarded(lens, lens.review, ctx, list(emitted)))
        if self._keep_history:
            try:
                self._history.extend(emitted)
            except Exception as error:  # noqa: BLE001 - the sinks still get every record
                self._keep_history = False
                self._warn_once(
                    "RecordHistory.extend", error, "records() holds no records past this step"
                )
        self._unflushed.extend(emitted)

    def _sites_per_lens(self, windows: dict[str, SiteWindow]) -> dict[int, tuple[str, ...]]:
        """Lens id -> the sites of `windows` it reads, in window order.

        A run's steps see a handful of site sets (parameters and distributions join on some
        steps), so the filtering is done once per set rather than for every lens every step.
        """
        sites = tuple(windows)
        found = self._lens_sites.get(sites)
        if found is None:
            if len(self._lens_sites) >= 64:  # a model whose sites keep changing: stay bounded
                self._lens_sites.clear()
            found = self._lens_sites[sites] = {
                id(lens): tuple(
                    site
                    for site, w in windows.items()
                    if w.kind in self._kinds_at[id(lens)].get(w.module, ())
                )
                for lens in self.lenses
            }
        return found

    def _guarded(self, lens: Lens, method: Any, *args: Any) -> list[Record]:  # noqa: ANN401
        """Call a lens method; a failing lens warns once and the run goes on."""
        try:
            return method(*args)
        except Exception as error:  # noqa: BLE001 - a lens must never kill training
            if repr(lens) not in self._notes:
                self._notes.add(repr(lens))
                warnings.warn(
                    f"layerscope: lens {lens!r} failed: {error!r}", RuntimeWarning, stacklevel=3
                )
            return []

    @property
    def force_torch_reducer(self) -> bool:
        """Reduce CPU tensors with the torch-op (device) path; tests compare the two."""
        return self._windows.force_torch

    @force_torch_reducer.setter
    def force_torch_reducer(self, value: bool) -> None:
        self._windows.force_torch = value


def _loss_tensor(loss: torch.Tensor | float) -> torch.Tensor:
    """The loss as a detached float tensor (a Python number becomes a 0-d CPU tensor)."""
    if isinstance(loss, torch.Tensor):
        return loss.detach().float()
    return torch.tensor(float(loss))


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
