"""Windows: what each site's observations of one step reduce to, on the host.

The Scope hands every observed tensor to a :class:`WindowBuilder`, which reduces it at once
(C++ fused kernel on CPU, torch ops on the tensor's device otherwise) and keeps only the small
result. At the end of a step the step's observations are closed; :meth:`WindowBuilder.ready`
turns closed steps into :class:`StepWindows`, copying whatever is still on a device to the host
in a single transfer.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layerscope import stats
from layerscope.records import HistogramValue
from layerscope.reduce.contract import Needs, SiteWindow
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.tensors import (
    QUANTILE_LEVELS,
    DeviceSummary,
    combine,
    count_exceeding,
    count_exceeding_torch,
    device_tensors,
    fetch,
    strided_sample,
    summarize_cpu,
    summarize_norms_cpu,
    summarize_norms_torch,
    summarize_torch,
    unpack,
)
from layerscope.stats.vectors import VectorRows, combine_values

#: Histogram edges of every site: symmetric log scale from 1e-9 to 1e4, four bins a decade.
HISTOGRAM_EDGES: dict[str, float] = {"linear_width": 1e-9, "max_abs": 1e4, "bins_per_decade": 4}
#: Capacity of the exact-quantile buffer of one site and step (samples are smaller anyway).
QUANTILE_CAPACITY = 1 << 20
#: Observations of one site one step keeps apart. Past it host summaries are merged (exactly);
#: what cannot be merged without a device sync (device summaries, whole vectors) is dropped,
#: with a warning: a step that never closes must not grow without bound.
PENDING_LIMIT = 256


@dataclass(slots=True)
class _Pending:
    """Observations of one site during one step."""

    module: str
    kind: str
    summaries: list[SiteSummary | DeviceSummary] = field(default_factory=list)
    quantiles: Any = None  # stats.ExactQuantiles on the host, list of device samples otherwise
    histogram: Any = None  # stats.Histogram on the host, list of device bin counts otherwise
    values: list[tuple[Any, Any]] = field(default_factory=list)  # (vector, count): Needs.values
    rows: VectorRows | None = None  # how the values' rows merge (None: every element a mean)
    exceed: dict[tuple[float, bool], Any] = field(default_factory=dict)  # int, or device counts
    on_device: bool = False  # some of it is still on a device
    dropped: int = 0  # observations past PENDING_LIMIT that could not be merged


@dataclass
class _ClosedStep:
    """The observations of a finished step, waiting for :meth:`WindowBuilder.ready`."""

    step: int
    epoch: int
    pending: dict[str, _Pending]
    on_device: bool


@dataclass
class StepWindows:
    """Every site's window of one step."""

    step: int
    epoch: int
    windows: dict[str, SiteWindow]


def _merge_into(into: _Pending, other: _Pending) -> None:
    """Fold the observations of `other` (the same site, one step) into `into`."""
    into.summaries.extend(other.summaries)
    into.values.extend(other.values)
    into.rows = into.rows or other.rows
    for name in ("quantiles", "histogram"):
        mine, theirs = getattr(into, name), getattr(other, name)
        if mine is None or theirs is None:
            setattr(into, name, mine if theirs is None else theirs)
        elif isinstance(mine, list):  # device parts, reduced at the flush
            mine.extend(theirs)
        else:
            mine.merge(theirs)
    for key, count in other.exceed.items():
        into.exceed[key] = into.exceed[key] + count if key in into.exceed else count
    into.on_device = into.on_device or other.on_device
    into.dropped += other.dropped


@functools.cache
def histogram_edges() -> np.ndarray:
    """The edges of :data:`HISTOGRAM_EDGES` (computed once)."""
    return stats.Histogram.symlog(**HISTOGRAM_EDGES).edges


def set_quantiles(window: SiteWindow, state: Any) -> None:  # noqa: ANN401
    """Keep a quantile state on `window` and read the standard levels off it."""
    window.quantile_state = state
    if state.count:
        levels = state.quantile(list(QUANTILE_LEVELS))
        window.quantiles = dict(zip(QUANTILE_LEVELS, map(float, levels), strict=False))


class WindowBuilder:
    """Reduces observations as they come and assembles them into per-step windows.

    Args:
        force_torch: reduce CPU tensors with the torch-op path too (tests compare the two).
    """

    def __init__(self, force_torch: bool = False) -> None:
        self.force_torch = force_torch
        self.edges = histogram_edges()
        self._device_edges: dict[torch.device, torch.Tensor] = {}
        self._current: dict[str, _Pending] = {}
        self._closed: list[_ClosedStep] = []
        self._dropping = False  # whether a never-closing step has had observations dropped
        self._failed_statistics: set[tuple[str, str]] = set()  # (site, "quantiles"/"histogram")
        # What the step observed before the forward pass in progress began (gradient
        # accumulation's earlier micro-batches): kept apart so that an aborted pass can go.
        self._before_forward: dict[str, _Pending] | None = None

    @property
    def has_device_work(self) -> bool:
        """Whether a closed step still holds values on a device."""
        return any(closed.on_device for closed in self._closed)

    def add(
        self,
        module: str,
        kind: str,
        site: str,
        tensor: torch.Tensor,
        needs: Needs,
        axis: int | None,
        threshold: float | None,
        count: Any = None,  # noqa: ANN401 - a number, or a host array broadcastable to `tensor`
        rows: VectorRows | None = None,
    ) -> None:
        """Reduce one observed tensor into `site`'s window.

        A kept vector (:attr:`Needs.values`) summarizes `count` items, and `rows` says how its
        rows merge with the site's other vectors (see :func:`combine_values`).
        """
        pending = self._current.get(site)  # _pending, without a call per observation
        if pending is None:
            pending = self._current[site] = _Pending(module, kind)
        if len(pending.summaries) >= PENDING_LIMIT and not self._bounded(site, pending):
            return
        if needs.values:  # a gatherer's already-reduced vector: kept whole, fetched at flush
            kept = tensor.detach().float()
            on_host = kept.is_cpu and not self.force_torch
            copy = kept.numpy().copy() if on_host else kept.clone()
            pending.values.append((copy, 1.0 if count is None else count))
            pending.rows = rows
            pending.on_device = pending.on_device or not on_host
        # A norms-only summary answers the lenses unless they read moments or unit activity.
        full = needs.moments or axis is not None
        if tensor.is_cpu and not self.force_torch:
            if full:
                pending.summaries.append(summarize_cpu(tensor, axis, 0.0, threshold))
            else:
                pending.summaries.append(summarize_norms_cpu(tensor))
            for key in needs.exceed:
                pending.exceed[key] = pending.exceed.get(key, 0) + count_exceeding(tensor, *key)
            if needs.quantiles or needs.histogram:
                self._add_distribution(site, pending, strided_sample(tensor), needs)
            return
        pending.on_device = True
        if full or needs.quantiles:  # the device path samples for quantiles in its summary
            pending.summaries.append(summarize_torch(tensor, axis, 0.0, threshold, needs.quantiles))
        else:
            pending.summaries.append(summarize_norms_torch(tensor))
        for key in needs.exceed:
            pending.exceed.setdefault(key, []).append(count_exceeding_torch(tensor, *key))
        if needs.histogram:
            pending.histogram = (pending.histogram or []) + [self._device_counts(tensor)]

    def _add_distribution(
        self, site: str, pending: _Pending, sample: torch.Tensor, needs: Needs
    ) -> None:
        """Fold a sample into the site's quantiles and histogram, each on its own.

        A statistic that fails is warned about once and left out of the site from then on;
        the site's other statistics go on.
        """
        if needs.quantiles and (site, "quantiles") not in self._failed_statistics:
            try:
                if pending.quantiles is None:
                    pending.quantiles = stats.ExactQuantiles(QUANTILE_CAPACITY)
                pending.quantiles.update(sample)
            except Exception as error:  # noqa: BLE001 - the site's other statistics go on
                self._statistic_failed(site, "quantiles", pending, error)
        if needs.histogram and (site, "histogram") not in self._failed_statistics:
            try:
                if pending.histogram is None:
                    pending.histogram = stats.Histogram.symlog(**HISTOGRAM_EDGES)
                pending.histogram.update(sample)
            except Exception as error:  # noqa: BLE001 - the site's other statistics go on
                self._statistic_failed(site, "histogram", pending, error)

    def _statistic_failed(
        self, site: str, statistic: str, pending: _Pending, error: Exception
    ) -> None:
        self._failed_statistics.add((site, statistic))
        setattr(pending, statistic, None)
        warnings.warn(
            f"layerscope: the {statistic} of site {site} could not be computed ({error!r}); "
            "it is left out from now on, the site's other statistics go on",
            RuntimeWarning,
            stacklevel=5,
        )

    def add_summary(self, module: str, kind: str, site: str, summary: SiteSummary) -> None:
        """Add a summary reduced elsewhere (on the host) to the current step's window of `site`."""
        pending = self._pending(module, kind, site)
        if len(pending.summaries) < PENDING_LIMIT or self._bounded(site, pending):
            pending.summaries.append(summary)

    def _bounded(self, site: str, pending: _Pending) -> bool:
        """Make room in a full `pending`: True when merged, False when the next one is dropped."""
        if not pending.values and all(isinstance(s, SiteSummary) for s in pending.summaries):
            pending.summaries = [combine(pending.summaries)]  # exact: counts and moments add up
            return True
        if not self._dropping:
            self._dropping = True
            warnings.warn(
                f"layerscope: site {site} was observed {PENDING_LIMIT} times in one step that "
                "never closed; further observations of such sites in that step are dropped. Is "
                "the optimizer that steps the one given to watch()? (see Scope.attach_optimizer)",
                RuntimeWarning,
                stacklevel=4,
            )
        pending.dropped += 1
        return False

    def _pending(self, module: str, kind: str, site: str) -> _Pending:
        pending = self._current.get(site)
        if pending is None:
            pending = self._current[site] = _Pending(module, kind)
        return pending

    def _device_counts(self, tensor: torch.Tensor) -> torch.Tensor:
        """Bin counts of a strided sample of `tensor`, on its device, with no host sync.

        Laid out [underflow, bins..., overflow]; bincount and boolean masks would synchronise.
        """
        edges = self._device_edges.get(tensor.device)
        if edges is None:  # one non-blocking copy per device, from pinned memory
            host = torch.as_tensor(self.edges, dtype=torch.float64)
            host = host.pin_memory() if tensor.device.type == "cuda" else host
            edges = self._device_edges[tensor.device] = host.to(tensor.device, non_blocking=True)
        x = strided_sample(tensor).double()  # the host histogram bins in float64 too
        slots = torch.bucketize(x, edges, right=True)  # 0: underflow, len(edges): overflow
        slots = torch.where(torch.isnan(x), len(edges) + 1, slots)
        counts = torch.zeros(len(edges) + 2, dtype=torch.int64, device=tensor.device)
        return counts.scatter_add_(0, slots, torch.ones_like(slots))[:-1]

    def close_step(self, step: int, epoch: int) -> None:
        """End the current step; its observations wait for :meth:`ready`."""
        if self._current:
            on_device = any(p.on_device for p in self._current.values())
            self._closed.append(_ClosedStep(step, epoch, self._current, on_device))
            self._current = {}

    def add_to_closed(
        self,
        step: int,
        epoch: int,
        module: str,
        kind: str,
        site: str,
        tensor: torch.Tensor,
        needs: Needs,
    ) -> None:
        """Reduce an observation into the windows of `step`, closed already.

        For a loss reported after the optimizer step: the step's windows wait in the builder
        until :meth:`ready` hands them out, and the loss joins them there.
        """
        for closed in reversed(self._closed):
            if closed.step == step:
                break
        else:  # that step was handed out already: its late values come as a step of their own
            closed = _ClosedStep(step, epoch, {}, False)
            self._closed.append(closed)
            self._closed.sort(key=lambda entry: entry.step)
        current, self._current = self._current, closed.pending
        try:
            self.add(module, kind, site, tensor, needs, None, None)
        finally:
            self._current = current
        closed.on_device = closed.on_device or closed.pending[site].on_device

    def discard_current(self) -> None:
        """Drop observations of a step that never finished."""
        self._current = {}
        self._before_forward = None

    def begin_forward(self) -> None:
        """A forward pass begins: until :meth:`end_forward` its observations can be dropped."""
        if self._current:
            self._before_forward, self._current = self._current, {}

    def end_forward(self) -> None:
        """The forward pass finished: its observations join the step's."""
        before, self._before_forward = self._before_forward, None
        if before is not None:
            for site, pending in self._current.items():
                old = before.get(site)
                if old is None:
                    before[site] = pending
                elif len(old.summaries) < PENDING_LIMIT or self._bounded(site, old):
                    _merge_into(old, pending)
            self._current = before

    def discard_step(self) -> list[str]:
        """Drop the current step's observations (its update never happened); their sites."""
        dropped = list({*self._current, *(self._before_forward or ())})
        self.discard_current()
        return dropped

    def abort_forward(self) -> list[str]:
        """Drop what a forward pass that raised observed; the sites it had observed."""
        dropped = list(self._current)
        self._current, self._before_forward = self._before_forward or {}, None
        return dropped

    def ready(self, hold_last: bool = False) -> list[StepWindows]:
        """Windows of every closed step, in step order; one device-to-host copy at most.

        `hold_last` keeps the latest closed step back, for values that may still arrive for it
        (:meth:`add_to_closed`).
        """
        if len(self._closed) <= hold_last:  # nothing to hand out: the usual idle step
            return []
        held = self._closed[-1:] if hold_last else []
        closed, self._closed = self._closed[: len(self._closed) - len(held)], held
        tensors: list[torch.Tensor] = []
        for entry in closed:
            if entry.on_device:
                for p in entry.pending.values():
                    tensors.extend(self._device_parts(p))
        values = iter(fetch(tensors))
        return [
            StepWindows(
                entry.step,
                entry.epoch,
                {site: self._window(site, p, values) for site, p in entry.pending.items()},
            )
            for entry in closed
        ]

    @staticmethod
    def _device_parts(p: _Pending) -> list[torch.Tensor]:
        """The tensors of `p` still on a device, in the order :meth:`_window` reads them."""
        parts: list[torch.Tensor] = []
        device = [s for s in p.summaries if isinstance(s, DeviceSummary)]
        for summary in device:
            parts.extend(device_tensors(summary))
        samples = [s.sample for s in device if s.sample is not None]
        if samples:  # the samples themselves: quantiles are then taken on the host, mergeably
            parts.append(torch.cat(samples))
        if isinstance(p.histogram, list):
            parts.append(torch.stack(p.histogram).sum(0))
        parts.extend(v for v, _ in p.values if isinstance(v, torch.Tensor))
        parts.extend(
            torch.stack(c).sum().reshape(1) for c in p.exceed.values() if isinstance(c, list)
        )
        return parts

    def _window(self, site: str, p: _Pending, values: Any) -> SiteWindow:  # noqa: ANN401
        summaries, quantiles = p.summaries, p.quantiles
        if p.on_device:  # read back what _device_parts fetched, in its order
            summaries = [
                unpack(s, values) if isinstance(s, DeviceSummary) else s for s in summaries
            ]
            if any(isinstance(s, DeviceSummary) and s.sample is not None for s in p.summaries):
                quantiles = stats.ExactQuantiles(QUANTILE_CAPACITY)
                quantiles.update(next(values))
        window = SiteWindow(site, p.module, p.kind, combine(summaries))
        if quantiles is not None:
            set_quantiles(window, quantiles)
        if isinstance(p.histogram, list):
            counts = next(values).astype(int).tolist()
            edges = tuple(map(float, self.edges))
            window.histogram = HistogramValue(edges, tuple(counts[1:-1]), counts[0], counts[-1])
        elif p.histogram is not None:
            h = p.histogram
            window.histogram = HistogramValue(
                tuple(map(float, h.edges)),
                tuple(map(int, h.counts)),
                int(h.underflow),
                int(h.overflow),
            )
        if p.values:
            window.values, window.values_count = combine_values(
                [
                    next(values).astype(np.float32).reshape(v.shape)
                    if isinstance(v, torch.Tensor)
                    else v
                    for v, _ in p.values
                ],
                [count for _, count in p.values],
                p.rows,
            )
            window.values_rows = p.rows
        if p.exceed:
            window.exceed = {
                key: int(next(values)[0]) if isinstance(c, list) else c
                for key, c in p.exceed.items()
            }
        return window
