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

from layerscope.distributed import (
    check_parameters_readable,
    local_part,
    merge_to_rank0,
    rank_and_size,
    wait_for_all_ranks,
)
from layerscope.docs import error_message
from layerscope.gatherers import GATHERERS, GatherContext, Gatherer
from layerscope.history import RecordHistory
from layerscope.lenses import EmitContext, Lens, Needs, default
from layerscope.lenses.builtin import RELU_LIKE
from layerscope.lenses.statistics import SiteWindow
from layerscope.observation import is_distributed_tensor, readable_reason
from layerscope.records import Record
from layerscope.reducers import HostSummary
from layerscope.sinks.base import GuardedSink, Sink
from layerscope.sinks.console import LogSink, attach_line
from layerscope.units import unit_axes, unit_axis
from layerscope.windows import StepWindows, WindowBuilder

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
        chosen = default(optimizer is not None, every) if lenses is None else list(lenses)
        for lens in chosen:
            if not isinstance(lens, Lens):
                raise ValueError(f"layerscope.watch: lenses must be Lens objects, got {lens!r}")
        # A lens given by the user is configuration; its state (trackers, findings) belongs to
        # this run, so the same lens objects can watch another model or run afterwards.
        self.lenses: list[Lens] = [copy.deepcopy(lens) for lens in chosen]
        self._modules = dict(model.named_modules())
        self._order = {name: i for i, name in enumerate(self._modules)}
        self._axes = unit_axes(self._modules)
        #: lens id -> module name -> the kinds it reads there
        self._kinds_at = {
            id(lens): lens.kinds_by_module(self._modules.items()) for lens in self.lenses
        }
        self._schedules = [(lens.first, lens.every or every, lens.schedule) for lens in self.lenses]
        self.rank, self.world_size = rank_and_size()

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

        self._gatherers = self._install_gatherers()
        self._busy: list[Gatherer] = []  # those with something to observe on this step
        self._handles = [model.register_forward_pre_hook(self._mark_forward)]
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._optimizer_pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._optimizer_post_step))

        self.sinks: list[GuardedSink] = []
        if self.rank == 0:  # one writer per run
            self.sinks = [GuardedSink(s) for s in sinks]
            if logdir is not None:
                from layerscope.sinks.tensorboard import TensorBoardSink

                self.sinks.insert(0, GuardedSink(TensorBoardSink(logdir)))
            log_sink = LogSink()  # findings and the attach line go to the log unless turned off
            self.sinks.append(GuardedSink(log_sink))
            watched = {
                m
                for at in self._kinds_at.values()
                for m, k in at.items()
                if k != ("loss",) and (m or len(self._modules) == 1)
            }
            log_sink.attached(
                attach_line(model, len(watched), [x.tag for x in self.lenses], logdir, sinks)
            )
        self.logdir = logdir
        self._plan_step()
        ref = weakref.ref(self)
        self._atexit = lambda: (s := ref()) is not None and s.close()
        atexit.register(self._atexit)

    def _install_gatherers(self) -> list[Gatherer]:
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
        context = GatherContext(
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
        )
        every_kind = {kind for kinds in wanted.values() for kind in kinds}
        check_parameters_readable(
            self.model, every_kind & {k for g in GATHERERS if g.replicated for k in g.kinds}
        )
        gatherers = [g(context) for g in GATHERERS if every_kind & set(g.kinds)]
        self._replicated = {k for g in gatherers if g.replicated for k in g.kinds}
        self._sharded: set[str] = set()  # sites of DTensors: merged across ranks
        return gatherers

    # -- the user's calls ----------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Mark the end of a training step, optionally recording its loss.

        With an optimizer the optimizer counts steps; then this only records the loss (for the
        step whose forward pass produced it, whether called before or after ``opt.step()``).
        """
        if self._closed:
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
        ``close()`` do so at the same points on every rank).
        """
        self._flush(hold_last=False)

    def _flush(self, hold_last: bool) -> None:
        self._emit_ready(collective=True, hold_last=hold_last)
        batch, self._unflushed = self._unflushed, []
        if batch:
            for sink in self.sinks:
                sink.write(batch)

    def close(self) -> None:
        """Flush, close the sinks and remove every hook. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._windows.discard_current()  # a step that never finished
        try:
            self.flush()
            wait_for_all_ranks()
        finally:
            for sink in self.sinks:
                sink.close()
            for gatherer in self._gatherers:
                gatherer.remove()
            # Gatherers call back into the scope: dropping them breaks that reference cycle, so
            # the scope (and the model it holds) is freed with its last reference, not by the
            # cycle collector late in interpreter shutdown, after torch.distributed has gone.
            self._gatherers = []
            self._busy = []
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            atexit.unregister(self._atexit)

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue its curves: counters and lens states."""
        self.flush()
        return {
            "version": 1,
            "step": self.step_count,
            "epoch": self.epoch_count,
            "lenses": [lens.state_dict() for lens in self.lenses],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s counters and lens states (same lenses, same order)."""
        if state.get("version") != 1:
            raise ValueError(
                f"Scope.load_state_dict: unknown state version {state.get('version')!r}"
            )
        if len(state["lenses"]) != len(self.lenses):
            raise ValueError(
                f"Scope.load_state_dict: the state holds {len(state['lenses'])} lenses, this "
                f"scope has {len(self.lenses)}; attach the same lenses as the saved run"
            )
        for lens, lens_state in zip(self.lenses, state["lenses"], strict=False):
            lens.load_state_dict(lens_state)
        self.step_count = int(state["step"])
        self.epoch_count = int(state["epoch"])
        self._plan_step()

    # -- steps ---------------------------------------------------------------------------------
    def _mark_forward(self, module: nn.Module, args: Any) -> None:  # noqa: ANN401
        if torch.is_grad_enabled():
            self._forward_since_step = True

    def _optimizer_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> Any:  # noqa: ANN401
        # torch passes the step's own arguments: (optimizer, closure?) and keyword arguments.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if not callable(closure):
            for gatherer in self._busy:
                gatherer.before_step()
            return None
        # ``opt.step(closure)`` (LBFGS, Lightning) computes the gradients inside the step, after
        # this hook: read them when the closure has run the first time.
        done = False

        def observed_closure() -> Any:  # noqa: ANN401
            nonlocal done
            result = closure()
            if not done:
                done = True
                for gatherer in self._busy:
                    gatherer.before_step()
            return result

        rest = {k: v for k, v in kwargs.items() if k != "closure"}
        return args[:1], {**rest, "closure": observed_closure}

    def _optimizer_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:  # noqa: ANN401
        for gatherer in self._busy:
            gatherer.after_step()
        self._finish_step()

    def _take_step(self) -> None:
        for gatherer in self._busy:
            gatherer.before_step()
        self._finish_step()

    def _plan_step(self) -> None:
        """Work out which (module, kind) pairs the lenses active on this step observe.

        A plan depends only on which lenses are active, so each combination is worked out once;
        the gatherers hear of it when it changes, and only those with work in it act at the
        step boundary.
        """
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
            for gatherer in self._gatherers:
                gatherer.follow(plan)

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
        self._closed_step_reads_loss = ("", "loss") in self._active
        self._windows.close_step(self.step_count, self.epoch_count)
        self.step_count += 1
        self._forward_since_step = False
        self._plan_step()
        # The step just closed waits for the next one: a loss reported after the optimizer step
        # (the usual order) still joins it, so that each step is emitted once, whole.
        if self.step_count % self.flush_every == 0:
            self._flush(hold_last=True)
        elif self.world_size == 1 and not self._windows.has_device_work:
            self._emit_ready(collective=False, hold_last=True)  # host values: no need to wait

    # -- observing -----------------------------------------------------------------------------
    def _observe(self, module: str, kind: str, site: str, tensor: torch.Tensor) -> None:
        needs = self._active.get((module, kind))
        if needs is None or self._closed:
            return
        reason = readable_reason(tensor)
        if reason is not None:
            if site not in self._notes:
                self._notes.add(site)
                log.info("layerscope: skipping site %s: a statistic cannot read %s", site, reason)
            return
        if tensor.numel() == 0:
            return
        axis = unit_axis(self._axes.get(module), tensor) if needs.activity else None
        if is_distributed_tensor(tensor):  # FSDP2: this rank reduces its shard
            self._sharded.add(site)
            tensor, axis = local_part(tensor, axis)
            if tensor is None or tensor.numel() == 0:
                return
        relu_like = kind == "output" and isinstance(self._modules.get(module), RELU_LIKE)
        try:
            self._windows.add(module, kind, site, tensor, needs, axis, 0.0 if relu_like else None)
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            if site not in self._notes:
                self._notes.add(site)
                warnings.warn(
                    f"layerscope: could not reduce site {site} ({error!r}); it is skipped "
                    "from now on",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._failed.add((module, kind))
            for plan in self._plans.values():
                plan.pop((module, kind), None)

    def _summary_suffices(self, module: str, kind: str) -> bool:
        needs = self._active.get((module, kind))
        return needs == Needs() and not self._closed and not self._windows.force_torch

    def _observe_summary(self, module: str, kind: str, site: str, summary: HostSummary) -> None:
        """Take a summary a gatherer reduced on the host (after :meth:`_summary_suffices`)."""
        if (module, kind) in self._active and not self._closed and summary.size:
            self._windows.add_summary(module, kind, site, summary)

    def _observe_loss(self, loss: torch.Tensor | float) -> None:
        if ("", "loss") not in self._active:
            return
        tensor = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self._observe("", "loss", "loss", tensor.detach().float())

    def _late_loss(self, loss: torch.Tensor | float) -> None:
        """Record a loss for the step the optimizer just closed."""
        if not self._closed_step_reads_loss:
            return
        step = self.step_count - 1
        value = (
            loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        )
        self._windows.add_to_closed(step, self.epoch_count, "", "loss", "loss", value, Needs())

    # -- windows and records -------------------------------------------------------------------
    def _emit_ready(self, collective: bool, hold_last: bool = False) -> None:
        """Records for every closed step; across ranks only at a collective flush."""
        if self.world_size > 1 and not collective:
            return
        steps = self._windows.ready(hold_last)
        if self.world_size > 1:
            steps = merge_to_rank0(steps, self._replicated, self._sharded)
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
        self._history.extend(emitted)
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
        lenses: what to observe; ``None`` means :func:`layerscope.lenses.default`.
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
