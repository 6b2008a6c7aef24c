"""The Scope: one object owns an observed run — hooks, steps, lenses, records and sinks."""

from __future__ import annotations

import atexit
import logging
import math
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from layerscope import stats
from layerscope.docs import error_message
from layerscope.gatherers import GATHERERS, GatherContext, Gatherer
from layerscope.lenses import Lens, Needs, default
from layerscope.lenses.builtin import RELU_LIKE, UNIT_MODULES
from layerscope.lenses.statistics import SiteWindow
from layerscope.observation import readable_reason
from layerscope.records import HistogramValue, Record
from layerscope.reducers import (
    QUANTILE_LEVELS,
    DeviceSummary,
    HostSummary,
    combine,
    device_tensors,
    fetch,
    summarize_cpu,
    summarize_torch,
    unpack,
)
from layerscope.sinks.base import GuardedSink, Sink

log = logging.getLogger("layerscope")

#: Histogram edges for every site: symmetric log scale from 1e-9 to 1e4, four bins a decade.
HISTOGRAM_EDGES = dict(linear_width=1e-9, max_abs=1e4, bins_per_decade=4)


@dataclass
class _Pending:
    """Observations of one site during the current step."""

    module: str
    kind: str
    summaries: list[HostSummary | DeviceSummary] = field(default_factory=list)
    quantiles: Any = None  # stats.ExactQuantiles on the host, list of device samples otherwise
    histogram: Any = None  # stats.Histogram on the host, list of device bin counts otherwise


def _unit_axes(modules: dict[str, nn.Module]) -> dict[str, tuple[int, bool]]:
    """(unit axis, counts-from-the-end) per module: features last for Linear-like modules,
    channels at dim 1 for convolutions; activations inherit the axis of the module before them.
    """
    axes: dict[str, tuple[int, bool]] = {}
    previous = (-1, True)
    for name, module in modules.items():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                               nn.ConvTranspose2d, nn.ConvTranspose3d, nn.BatchNorm1d,
                               nn.BatchNorm2d, nn.BatchNorm3d)):
            previous = (1, False)
        elif isinstance(module, (*UNIT_MODULES, nn.LayerNorm, nn.Embedding)):
            previous = (-1, True)
        axes[name] = previous
    return axes


class Scope:
    """Observes a model (and optimizer) while it trains; see :func:`watch`.

    Steps are counted by the optimizer's step post-hook when an optimizer is given, else by
    :meth:`step`. On each step a lens's schedule allows, the lens's sites are observed, reduced
    (C++ fused kernel on CPU, torch ops on the device elsewhere) and turned into records; every
    ``flush_every`` steps the records go to the sinks. :meth:`close` (or leaving the ``with``
    block) flushes and removes every hook, leaving the model exactly as it was.

    Example:
        >>> import torch, layerscope
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(error_message(
                f"layerscope.watch: model must be a torch.nn.Module, got {type(model).__name__}",
                "bad-model"))
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(error_message(
                f"layerscope.watch: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}",
                "bad-optimizer"))
        if not isinstance(every, int) or every < 1:
            raise ValueError(error_message(
                f"layerscope.watch: every must be a positive integer, got {every!r}", "bad-option"))
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(error_message(
                f"layerscope.watch: flush_every must be a positive integer, got {flush_every!r}",
                "bad-option"))
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.flush_every = flush_every
        self.lenses: list[Lens] = list(default() if lenses is None else lenses)
        for lens in self.lenses:
            if not isinstance(lens, Lens):
                raise ValueError(f"layerscope.watch: lenses must be Lens objects, got {lens!r}")
        self._modules = dict(model.named_modules())
        self._order = {name: i for i, name in enumerate(self._modules)}
        self._axes = _unit_axes(self._modules)
        self._selected = {id(lens): set(lens.select(self._modules.items())) for lens in self.lenses}

        self.step_count = 0
        self.epoch_count = 0
        self._records: list[Record] = []
        self._unflushed: list[Record] = []
        self._deferred: list[tuple[int, int, dict[str, _Pending]]] = []
        self._pending: dict[str, _Pending] = {}
        self._active: dict[tuple[str, str], Needs] = {}
        self._active_modules: set[str] = set()
        self._forward_since_step = False
        self._notes: set[str] = set()
        self._closed = False
        self.force_torch_reducer = False  # tests: reduce CPU tensors as a device would

        wanted: dict[str, set[str]] = {}
        for lens in self.lenses:
            for name in self._selected[id(lens)]:
                wanted.setdefault(name, set()).update(lens.kinds)
        known = {"loss", *(kind for g in GATHERERS for kind in g.kinds)}
        for lens in self.lenses:
            for kind in lens.kinds:
                if kind not in known:
                    raise ValueError(error_message(
                        f"{lens!r} reads site kind {kind!r}, which no gatherer produces; "
                        f"known kinds: {', '.join(sorted(known))}", "unknown-kind"))
        context = GatherContext(
            modules=self._modules,
            wanted=wanted,
            observe=self._observe,
            enabled=self._active_modules.__contains__,
            optimizer=optimizer,
        )
        every_kind = {kind for kinds in wanted.values() for kind in kinds}
        self._gatherers: list[Gatherer] = [
            g(context) for g in GATHERERS if every_kind & set(g.kinds)
        ]
        self._handles = [model.register_forward_pre_hook(self._mark_forward)]
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._optimizer_pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._optimizer_post_step))

        self.sinks: list[GuardedSink] = [GuardedSink(s) for s in sinks]
        if logdir is not None:
            from layerscope.sinks.tensorboard import TensorBoardSink

            self.sinks.insert(0, GuardedSink(TensorBoardSink(logdir)))
        self.logdir = logdir
        self._plan_step()
        ref = weakref.ref(self)
        self._atexit = lambda: (s := ref()) is not None and s.close()
        atexit.register(self._atexit)

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
            return
        if loss is None:
            return
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
        """Every record so far (pending device values are fetched first)."""
        self._drain_deferred()
        return list(self._records)

    def to_pandas(self) -> Any:  # noqa: ANN401 - pandas is an optional extra
        """The records as a pandas DataFrame (needs the ``pandas`` extra)."""
        from layerscope.sinks.table import to_pandas

        return to_pandas(self.records())

    def flush(self) -> None:
        """Fetch pending device values and hand new records to the sinks."""
        self._drain_deferred()
        batch, self._unflushed = self._unflushed, []
        if batch:
            for sink in self.sinks:
                sink.write(batch)

    def close(self) -> None:
        """Flush, close the sinks and remove every hook. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            for sink in self.sinks:
                sink.close()
            for gatherer in self._gatherers:
                gatherer.remove()
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            atexit.unregister(self._atexit)

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps ---------------------------------------------------------------------------------
    def _mark_forward(self, module: nn.Module, args: Any) -> None:  # noqa: ANN401
        if torch.is_grad_enabled():
            self._forward_since_step = True

    def _optimizer_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> Any:  # noqa: ANN401
        # torch passes the step's own arguments: (optimizer, closure?) and keyword arguments.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if not callable(closure):
            for gatherer in self._gatherers:
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
                for gatherer in self._gatherers:
                    gatherer.before_step()
            return result

        rest = {k: v for k, v in kwargs.items() if k != "closure"}
        return args[:1], {**rest, "closure": observed_closure}

    def _optimizer_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:  # noqa: ANN401
        for gatherer in self._gatherers:
            gatherer.after_step()
        self._finish_step()

    def _take_step(self) -> None:
        for gatherer in self._gatherers:
            gatherer.before_step()
        self._finish_step()

    def _plan_step(self) -> None:
        """Work out which (module, kind) pairs the lenses active on this step observe."""
        self._active.clear()
        for lens in self.lenses:
            if not lens.active(self.step_count, self.every):
                continue
            for name in self._selected[id(lens)]:
                for kind in lens.kinds:
                    key = (name, kind)
                    self._active[key] = self._active.get(key, Needs()) | lens.needs(kind)
        self._active_modules.clear()
        self._active_modules.update(name for name, _ in self._active)

    def _finish_step(self) -> None:
        pending, self._pending = self._pending, {}
        step, epoch = self.step_count, self.epoch_count
        on_device = any(
            isinstance(s, DeviceSummary) for p in pending.values() for s in p.summaries
        )
        if on_device:
            self._deferred.append((step, epoch, pending))
        else:
            self._emit(step, epoch, {site: self._host_window(site, p) for site, p in pending.items()})
        self.step_count += 1
        self._forward_since_step = False
        self._plan_step()
        if self.step_count % self.flush_every == 0:
            self.flush()

    # -- observing -----------------------------------------------------------------------------
    def _note(self, key: str, message: str) -> None:
        if key not in self._notes:
            self._notes.add(key)
            log.info("layerscope: %s", message)

    def _observe(self, module: str, kind: str, site: str, tensor: torch.Tensor) -> None:
        needs = self._active.get((module, kind))
        if needs is None or self._closed:
            return
        reason = readable_reason(tensor)
        if reason is not None:
            self._note(site, f"skipping site {site}: a statistic cannot read {reason}")
            return
        if tensor.numel() == 0:
            return
        try:
            self._reduce(module, kind, site, tensor, needs)
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            if site not in self._notes:
                self._notes.add(site)
                warnings.warn(
                    f"layerscope: could not reduce site {site} ({error!r}); it is skipped "
                    "from now on", RuntimeWarning, stacklevel=2,
                )
            self._active.pop((module, kind), None)

    def _unit_axis(self, module: str, tensor: torch.Tensor) -> int | None:
        if tensor.dim() == 0:
            return None
        axis, from_end = self._axes.get(module, (-1, True))
        if not from_end and tensor.dim() < 3:  # an unbatched convolution input: (C, L)
            return 0
        return axis if from_end else min(axis, tensor.dim() - 1)

    def _reduce(self, module: str, kind: str, site: str, tensor: torch.Tensor, needs: Needs) -> None:
        pending = self._pending.get(site)
        if pending is None:
            pending = self._pending[site] = _Pending(module, kind)
        axis = self._unit_axis(module, tensor) if needs.activity else None
        relu_like = kind == "output" and isinstance(self._modules.get(module), RELU_LIKE)
        threshold = 0.0 if relu_like else None
        if tensor.device.type == "cpu" and not self.force_torch_reducer:
            pending.summaries.append(summarize_cpu(tensor, axis, 0.0, threshold))
            if needs.quantiles:
                pending.quantiles = pending.quantiles or stats.ExactQuantiles(capacity=1 << 20)
                pending.quantiles.update(tensor)
            if needs.histogram:
                pending.histogram = pending.histogram or stats.Histogram.symlog(**HISTOGRAM_EDGES)
                pending.histogram.update(tensor)
            return
        pending.summaries.append(summarize_torch(tensor, axis, 0.0, threshold, needs.quantiles))
        if needs.histogram:
            edges = torch.as_tensor(_histogram_edges(), device=tensor.device)
            x = tensor.detach().float().reshape(-1)
            x = x[~torch.isnan(x)]
            bins = torch.bucketize(x, edges, right=True)  # 0: underflow, len(edges): overflow
            counts = torch.bincount(bins, minlength=len(edges) + 1)
            pending.histogram = (pending.histogram or []) + [counts]

    def _observe_loss(self, loss: torch.Tensor | float) -> None:
        tensor = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self._observe("", "loss", "loss", tensor.detach())

    def _late_loss(self, loss: torch.Tensor | float) -> None:
        """Record a loss for the step the optimizer just closed."""
        step = self.step_count - 1
        lenses = [lens for lens in self.lenses if "loss" in lens.kinds and lens.active(step, self.every)]
        if not lenses:
            return
        value = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if value.device.type == "cpu" and value.is_floating_point():
            window = SiteWindow("loss", "", "loss", summarize_cpu(value, None, 0.0, None))
            self._emit(step, self.epoch_count, {"loss": window}, lenses)
        else:
            pending = _Pending("", "loss", [summarize_torch(value.float(), None, 0.0, None)])
            self._deferred.append((step, self.epoch_count, {"loss": pending}))

    # -- windows and records -------------------------------------------------------------------
    def _host_window(self, site: str, p: _Pending) -> SiteWindow:
        window = SiteWindow(site, p.module, p.kind, combine(p.summaries))  # type: ignore[arg-type]
        if p.quantiles is not None and p.quantiles.count:
            values = p.quantiles.quantile(list(QUANTILE_LEVELS))
            window.quantiles = dict(zip(QUANTILE_LEVELS, map(float, values)))
        if p.histogram is not None:
            h = p.histogram
            window.histogram = HistogramValue(
                tuple(map(float, h.edges)), tuple(map(int, h.counts)), int(h.underflow), int(h.overflow)
            )
        return window

    def _drain_deferred(self) -> None:
        """Fetch every pending device summary of every deferred step in one transfer."""
        if not self._deferred:
            return
        deferred, self._deferred = self._deferred, []
        tensors: list[torch.Tensor] = []
        for _, _, pending in deferred:
            for p in pending.values():
                device = [s for s in p.summaries if isinstance(s, DeviceSummary)]
                for summary in device:
                    tensors.extend(device_tensors(summary))
                samples = [s.sample for s in device if s.sample is not None]
                if samples:
                    joined = torch.cat(samples)
                    levels = torch.tensor(QUANTILE_LEVELS, device=joined.device)
                    tensors.append(torch.quantile(joined, levels) if joined.numel() else levels * math.nan)
                if isinstance(p.histogram, list):
                    tensors.append(torch.stack(p.histogram).sum(0))
        values = iter(fetch(tensors))  # the one device-to-host copy of this flush
        edges = tuple(map(float, _histogram_edges()))
        for step, epoch, pending in deferred:
            windows = {}
            for site, p in pending.items():
                summary = combine([unpack(s, values) if isinstance(s, DeviceSummary) else s for s in p.summaries])
                window = SiteWindow(site, p.module, p.kind, summary)
                if any(isinstance(s, DeviceSummary) and s.sample is not None for s in p.summaries):
                    window.quantiles = dict(zip(QUANTILE_LEVELS, next(values).tolist()))
                if isinstance(p.histogram, list):
                    counts = next(values).astype(int).tolist()
                    window.histogram = HistogramValue(edges, tuple(counts[1:-1]), counts[0], counts[-1])
                windows[site] = window
            self._emit(step, epoch, windows)

    def _emit(
        self, step: int, epoch: int, windows: dict[str, SiteWindow], lenses: Sequence[Lens] | None = None
    ) -> None:
        from layerscope.lenses import EmitContext

        ctx = EmitContext(step=step, epoch=epoch, windows=windows, module_order=self._order)
        active = [lens for lens in (self.lenses if lenses is None else lenses) if lens.active(step, self.every)]
        emitted: list[Record] = []
        for lens in active:
            chosen = self._selected[id(lens)]
            sites = [s for s, w in windows.items() if w.module in chosen and w.kind in lens.kinds]
            emitted.extend(self._guarded(lens, lens.emit, ctx, sites))
        for lens in active:  # lenses that judge the step as a whole read every lens's records
            emitted.extend(self._guarded(lens, lens.review, ctx, list(emitted)))
        self._records.extend(emitted)
        self._unflushed.extend(emitted)

    def _guarded(self, lens: Lens, method: Any, *args: Any) -> list[Record]:  # noqa: ANN401
        """Call a lens method; a failing lens warns once and the run goes on."""
        try:
            return method(*args)
        except Exception as error:  # noqa: BLE001 - a lens must never kill training
            if repr(lens) not in self._notes:
                self._notes.add(repr(lens))
                warnings.warn(f"layerscope: lens {lens!r} failed: {error!r}", RuntimeWarning, stacklevel=3)
            return []


def _histogram_edges() -> Any:  # noqa: ANN401
    return stats.Histogram.symlog(**HISTOGRAM_EDGES).edges


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    lenses: Sequence[Lens] | None = None,
    every: int = 1,
    logdir: str | None = None,
    sinks: Sequence[Sink] = (),
    flush_every: int = 10,
) -> Scope:
    """Attach layerscope to `model` (and `optimizer`) in one line.

    Args:
        model: the module to observe; it is left exactly as it was after ``close()``.
        optimizer: when given, its steps count layerscope's steps and gradients are read at
            each ``optimizer.step()``.
        lenses: what to observe; ``None`` means :func:`layerscope.lenses.default`.
        every: observe every N-th step (lenses with their own schedule keep it).
        logdir: write a TensorBoard run there (needs the ``tensorboard`` extra).
        sinks: further sinks that receive the records at each flush.
        flush_every: hand records to the sinks every N steps (and on close).

    Returns:
        The :class:`Scope`; use it as a context manager or call ``close()``.

    Raises:
        ValueError: a non-Module, a lens selecting no module, a bad option.
    """
    return Scope(model, optimizer, lenses, every, logdir, sinks, flush_every)
