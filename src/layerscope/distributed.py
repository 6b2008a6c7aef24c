"""Merging per-rank windows under torch.distributed, so that rank 0 writes what all ranks saw.

Each rank reduces its own observations. At a flush every rank calls :func:`merge_to_rank0`
with the same steps; the ranks' windows travel to rank 0 (one ``gather_object`` of small,
mergeable states) and are combined there exactly: moments by Chan's formula, norms as root sums
of squares, activity counts and histogram counts by addition, quantile buffers by their merge.
Windows of replicated state — parameters and their (already all-reduced) gradients under DDP —
are taken from rank 0 alone, since every rank holds the same values.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch.distributed as dist

from layerscope import stats
from layerscope.lenses.statistics import SiteWindow
from layerscope.records import HistogramValue
from layerscope.reducers import combine, combine_values
from layerscope.windows import StepWindows, set_quantiles


def rank_and_size() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _pack(w: SiteWindow) -> tuple[Any, ...]:
    state = w.quantile_state.serialize() if w.quantile_state is not None else None
    return (w.module, w.kind, w.summary, w.histogram, state, w.values, w.exceed)


def _merge_site(site: str, packed: Sequence[tuple[Any, ...]]) -> SiteWindow:
    module, kind = packed[0][0], packed[0][1]
    window = SiteWindow(site, module, kind, combine([p[2] for p in packed]))
    histograms = [p[3] for p in packed if p[3] is not None]
    if histograms:
        first = histograms[0]
        counts = [sum(h.counts[i] for h in histograms) for i in range(len(first.counts))]
        window.histogram = HistogramValue(
            first.edges,
            tuple(counts),
            sum(h.underflow for h in histograms),
            sum(h.overflow for h in histograms),
        )
    values = [p[5] for p in packed if p[5] is not None]
    if values:  # gatherers' own reductions (attention heads, timesteps): the mean over ranks
        window.values = combine_values(values)
    exceed = [p[6] for p in packed if p[6]]
    if exceed:  # element counts add up
        window.exceed = {key: sum(e.get(key, 0) for e in exceed) for key in exceed[0]}
    states = [stats.ExactQuantiles.deserialize(p[4]) for p in packed if p[4] is not None]
    if states:
        merged = states[0]
        for other in states[1:]:
            merged.merge(other)
        set_quantiles(window, merged)
    return window


def merge_to_rank0(steps: Sequence[StepWindows], replicated: Collection[str]) -> list[StepWindows]:
    """Combine every rank's windows of the same steps; rank 0 gets them, other ranks ``[]``.

    Every rank must call this at the same flush (collective). `replicated` names the site kinds
    whose values are identical on every rank; rank 0's window of those is used as it is.
    """
    rank, size = rank_and_size()
    if size == 1:
        return list(steps)
    payload = [(s.step, s.epoch, {site: _pack(w) for site, w in s.windows.items()}) for s in steps]
    gathered: list[Any] | None = [None] * size if rank == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    if rank != 0 or gathered is None:
        return []
    by_step: dict[int, tuple[int, dict[str, list[tuple[Any, ...]]]]] = {}
    for from_rank, rank_payload in enumerate(gathered):
        for step, epoch, windows in rank_payload:
            entry = by_step.setdefault(step, (epoch, {}))
            for site, packed in windows.items():
                if packed[1] in replicated and from_rank != 0:
                    continue
                entry[1].setdefault(site, []).append(packed)
    return [
        StepWindows(step, epoch, {site: _merge_site(site, p) for site, p in sites.items()})
        for step, (epoch, sites) in sorted(by_step.items())
    ]
