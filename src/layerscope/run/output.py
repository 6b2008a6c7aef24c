"""Records out: closed steps become records, kept for ``records()`` and handed to the sinks.

Each closed step's windows go to the lenses active on it (``emit``, then ``review`` for the
lenses that judge a step whole); the records join the history and wait for the next flush.
Under torch.distributed a flush is a collective: the ranks' windows are merged on rank 0,
which alone writes; a rank that goes missing ends the exchange with a warning, not a hang.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

from torch import nn

from layerscope.distributed import Exchange, RankMissing, merge_to_rank0
from layerscope.drift import changes_since_watch
from layerscope.history import RecordHistory
from layerscope.lenses import EmitContext
from layerscope.record_columns import RecordColumns
from layerscope.records import Record
from layerscope.reduce.windows import StepWindows, WindowBuilder
from layerscope.run.guard import Guard
from layerscope.run.plan import Plan
from layerscope.sinks.base import GuardedSink, Sink
from layerscope.sinks.console import LogSink


class Output:
    """Turns a run's closed steps into records and hands them out.

    Args:
        windows: the step windows to read closed steps from.
        guard, plan: the run's containment and plan.
        model: the observed model, and `modules`, every module of it by qualified name in
            model order, and `params`, its own parameters, as they were at ``watch()``.
        history: most records kept for ``records()``.
        world_size: processes in the run; above 1 a flush merges across ranks.
        replicated, sharded: the site kinds taken from rank 0 and the sites merged from
            shards (see :func:`layerscope.distributed.merge_to_rank0`); filled as the run goes.
        flush_every: flush every N steps.

    Attributes:
        sinks: where records go at a flush (rank 0 only; empty elsewhere).
        remove_hooks: called when this rank leaves the exchange (it stops observing).
    """

    def __init__(
        self,
        windows: WindowBuilder,
        guard: Guard,
        plan: Plan,
        model: nn.Module,
        modules: dict[str, nn.Module],
        params: list[nn.Parameter],
        history: int,
        world_size: int,
        replicated: set[str],
        sharded: set[str],
        flush_every: int,
    ) -> None:
        self._windows, self._guard, self._plan = windows, guard, plan
        self._order = {name: i for i, name in enumerate(modules)}
        self._model, self._modules, self._params = model, modules, params
        self.history = RecordHistory(history)
        self._keep_history = True
        self._unflushed: list[Record] = []
        self._world_size = world_size
        # None on one process, and once this rank has left the exchange (a rank went missing).
        self._exchange = Exchange() if world_size > 1 else None
        self._replicated, self._sharded = replicated, sharded
        self._flush_every = flush_every
        self.remove_hooks: Callable[[], object] = lambda: None
        self.sinks: list[GuardedSink] = []

    def open_sinks(self, sinks: Sequence[Sink], logdir: str | None, line: str) -> None:
        """Open the sinks (on rank 0 alone: one writer per run) and log the attach line.

        Args:
            sinks: the user's sinks.
            logdir: a TensorBoard run's directory, if any.
            line: what the run watches and where it writes, for the log.
        """
        self.sinks = [GuardedSink(s) for s in sinks]
        if logdir is not None:
            from layerscope.sinks.tensorboard import TensorBoardSink

            self.sinks.insert(0, GuardedSink(TensorBoardSink(logdir)))
        log_sink = LogSink()  # findings and the attach line go to the log unless turned off
        self.sinks.append(GuardedSink(log_sink))
        log_sink.attached(line)

    def step_closed(self, step_count: int) -> None:
        """A step closed: flush every ``flush_every`` steps, else emit what is ready."""
        if step_count % self._flush_every == 0:
            self.flush(step_count, hold_last=True)
        elif self._world_size == 1 and not self._windows.has_device_work:
            self.emit_ready(collective=False, hold_last=True)  # host values: no need to wait

    def flush(self, step_count: int, hold_last: bool) -> None:
        """Emit every closed step (across ranks) and hand new records to the sinks."""
        if "model changed" not in self._guard.notes and not self._guard.closed:
            self._check_modules()
        self.emit_ready(collective=True, step_count=step_count, hold_last=hold_last)
        batch, self._unflushed = self._unflushed, []
        if batch:
            for sink in self.sinks:  # queued everywhere first: a Ctrl-C in one write loses none
                sink.queue(batch)
            for sink in self.sinks:
                sink.drain()

    def _check_modules(self) -> None:
        """Warn once when modules or parameters changed since watch(): they go unobserved."""
        changes = changes_since_watch(self._model, self._modules, self._params)
        if changes is not None:
            self._guard.notes.add("model changed")
            warnings.warn(
                f"layerscope: the model's modules changed after watch() ({changes}); new "
                "modules and parameters are not observed and replaced ones are no longer seen. "
                "Close this scope and watch the model again",
                RuntimeWarning,
                stacklevel=4,
            )

    def emit_ready(self, collective: bool, step_count: int = 0, hold_last: bool = False) -> None:
        """Records for every closed step; across ranks only at a collective flush."""
        if (self._world_size > 1 and not collective) or "WindowBuilder.ready" in self._guard.notes:
            return  # (steps closed before a failure elsewhere are still handed out)
        steps: list[StepWindows] = []
        if not self._guard.contained(
            "WindowBuilder.ready", lambda: steps.extend(self._windows.ready(hold_last))
        ):
            return
        if self._world_size > 1:
            if self._exchange is None:  # this rank left the exchange: nothing can be merged
                return
            try:
                steps = merge_to_rank0(
                    steps, self._replicated, self._sharded, self._exchange, f"step {step_count}"
                )
            except RankMissing as error:
                self.leave_exchange(str(error))
                return
        for step_windows in steps:
            self._emit(step_windows)

    def _emit(self, sw: StepWindows) -> None:
        ctx = EmitContext(
            step=sw.step, epoch=sw.epoch, windows=sw.windows, module_order=self._order
        )
        plan, lens_call = self._plan, self._guard.lens_call
        active = [plan.lenses[i] for i in plan.active_lenses(sw.step)]
        lens_sites = plan.sites_per_lens(sw.windows)
        emitted: list[Record] = []
        for lens in active:
            emitted.extend(lens_call(lens, lens.emit, ctx, lens_sites[id(lens)]))
        for lens in active:  # lenses that judge the step as a whole read every lens's records
            if id(lens) in plan.reviewers:
                emitted.extend(lens_call(lens, lens.review, ctx, list(emitted)))
        if self._keep_history:
            try:
                self.history.extend(emitted)
            except Exception as error:  # noqa: BLE001 - the sinks still get every record
                self._keep_history = False
                self._guard.warn_once(
                    "RecordHistory.extend", error, "records() holds no records past this step"
                )
        self._unflushed.extend(emitted)

    def records(self) -> list[Record]:
        """The records emitted so far (thinned past ``history`` records)."""
        self.emit_ready(collective=False)
        return list(self.history)

    def columns(self) -> RecordColumns:
        """The records emitted so far, as columns (thinned past ``history`` records)."""
        self.emit_ready(collective=False)
        return self.history.columns()

    def close(self, step_count: int) -> None:
        """The last flush; then the ranks part and the sinks close."""
        try:
            self.flush(step_count, hold_last=False)
            # No rank tears down its process group while a gather other ranks read is in flight.
            if self._exchange is not None:
                self._exchange.barrier("close")
                self._exchange.close()
        except RankMissing as error:
            self.leave_exchange(str(error))
        finally:
            for sink in self.sinks:
                sink.close()

    def leave_exchange(self, message: str) -> None:
        """A rank went missing: warn, stop exchanging and observing; training goes on."""
        if self._exchange is None:
            return
        self._exchange = None
        self.remove_hooks()
        warnings.warn(
            f"{message}. layerscope stops observing on this rank; the records merged so far "
            "stay (scope.records(), the sinks).",
            RuntimeWarning,
            stacklevel=3,
        )

    def abandon_exchange(self) -> None:
        """Training raised on this rank: part without waiting for ranks that will not come.

        The other ranks' next exchange then fails within their timeout, naming this rank.
        """
        self._exchange = None
        self._windows.discard_current()
