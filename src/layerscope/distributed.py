"""Merging per-rank windows under torch.distributed, so that rank 0 writes what all ranks saw.

Each rank reduces its own observations. At a flush every rank calls :func:`merge_to_rank0`
with the same steps; the ranks' windows travel to rank 0 (one ``gather_object`` of small,
mergeable states) and are combined there exactly: moments by Chan's formula, norms as root sums
of squares, activity counts and histogram counts by addition, quantile buffers by their merge.
Windows of replicated state — parameters and their (already all-reduced) gradients under DDP —
are taken from rank 0 alone, since every rank holds the same values.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) parameters, their gradients and the
optimizer's state are DTensors sharded across ranks: each rank reduces its local shard
(:func:`local_part`), and those sites are merged like activations, which gives the statistics
of the full tensor exactly. FSDP1 (``FullyShardedDataParallel``) hands out flattened pieces of
parameters that nothing marks as pieces; :func:`check_parameters_readable` refuses them.

layerscope's exchanges run on a gloo group of its own (:class:`Exchange`), never on the
training's group, and each is bounded: a rank that does not arrive within
``$LAYERSCOPE_DIST_TIMEOUT`` seconds (default 300) makes the exchange fail with
:class:`RankMissing`, naming the missing ranks, instead of blocking until the process group's
own timeout (30 minutes by default).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from layerscope import stats
from layerscope.docs import error_message
from layerscope.records import HistogramValue
from layerscope.reduce.contract import SiteWindow
from layerscope.reduce.windows import StepWindows, set_quantiles
from layerscope.stats.tensors import combine
from layerscope.stats.vectors import combine_values


def rank_and_size() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


#: Environment variable: seconds a layerscope exchange waits for the other ranks.
TIMEOUT_ENV = "LAYERSCOPE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


class RankMissing(RuntimeError):
    """A layerscope exchange across ranks could not complete: a rank failed, left or is late."""


def exchange_timeout() -> timedelta:
    """How long an exchange waits for every rank: ``$LAYERSCOPE_DIST_TIMEOUT`` seconds, or 300.

    Raises:
        ValueError: the variable is set to something other than a positive number.
    """
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            error_message(
                f"layerscope: ${TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}",
                "bad-option",
            )
        )
    return timedelta(seconds=seconds)


class Exchange:
    """layerscope's collectives: a gloo group of its own, every call bounded by a timeout.

    The group is made at the first exchange (every rank is at the same flush then), so that a
    scope costs nothing until it exchanges. Its traffic never pairs with the training's own
    collectives, and it stays on the CPU whatever the training's backend. Before each gather a
    monitored barrier checks that every rank arrived, so that a missing one is named.
    """

    def __init__(self) -> None:
        self.timeout = exchange_timeout()
        self._group: Any = None

    def gather(self, payload: object, where: str) -> list[Any] | None:
        """Every rank's `payload` on rank 0 (in rank order); ``None`` on the other ranks.

        Raises:
            RankMissing: a rank did not take part within the timeout; the message names it and
                `where` (the step or call that exchanged).
        """
        rank, size = rank_and_size()
        try:
            self._barrier()
            gathered: list[Any] | None = [None] * size if rank == 0 else None
            dist.gather_object(payload, gathered, dst=0, group=self._group)
        except RuntimeError as error:  # gloo's DistBackendError and timeouts are RuntimeErrors
            raise RankMissing(self._describe(error, where)) from error
        return gathered

    def barrier(self, where: str) -> None:
        """Return once every rank got here.

        Raises:
            RankMissing: as :meth:`gather`.
        """
        try:
            self._barrier()
        except RuntimeError as error:
            raise RankMissing(self._describe(error, where)) from error

    def close(self) -> None:
        """Free the group (after a last :meth:`barrier`: no rank uses it any more)."""
        group, self._group = self._group, None
        if group is not None and dist.is_initialized():
            dist.destroy_process_group(group)

    def _barrier(self) -> None:
        if self._group is None:
            self._group = dist.new_group(backend="gloo", timeout=self.timeout)
        dist.monitored_barrier(group=self._group, timeout=self.timeout, wait_all_ranks=True)

    def _describe(self, error: RuntimeError, where: str) -> str:
        rank, size = rank_and_size()
        seconds = f"{self.timeout.total_seconds():g}"
        found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(error))
        if found:
            missing = "rank" + ("s " if "," in found.group(1) else " ") + found.group(1).strip()
            who = f"{missing} of {size} did not reach it within {seconds} s"
        elif rank == 0:
            who = f"another rank of {size} failed or left"
        else:
            who = f"rank 0 (or another of {size}) did not answer within {seconds} s or left"
        return (
            f"layerscope: rank {rank}: the exchange of records across ranks at {where} could not "
            f"complete: {who} ({str(error).splitlines()[0][:200]}). Raise ${TIMEOUT_ENV} if a "
            "rank is only slow (a long checkpoint or evaluation on one rank)"
        )


def local_part(tensor: torch.Tensor, axis: int | None) -> tuple[torch.Tensor | None, int | None]:
    """What this rank contributes to the merged statistics of a DTensor, and its unit axis.

    The local shard, chosen so that across ranks every element of the full tensor is counted
    once: along a mesh dimension the tensor is replicated on (HSDP's replicas, a replicated
    DTensor), only the ranks at coordinate 0 contribute. A DTensor of partial sums is refused
    earlier (:func:`layerscope.observation.readable_reason`). The unit axis is dropped when the
    tensor is sharded along it, since each rank then holds other units.

    Returns:
        (local tensor, unit axis), or (None, None) when this rank contributes nothing.
    """
    coordinate = tensor.device_mesh.get_coordinate()
    if coordinate is None:  # this rank is outside the tensor's mesh
        return None, None
    sharded: set[int] = set()
    for mesh_dim, placement in enumerate(tensor.placements):
        if placement.is_shard():
            sharded.add(placement.dim % tensor.dim())
        elif coordinate[mesh_dim] != 0:
            return None, None
    if axis is not None and axis % tensor.dim() in sharded:
        axis = None
    return tensor.to_local(), axis


def check_parameters_readable(model: nn.Module, kinds: Collection[str]) -> None:
    """Refuse to observe parameter and optimizer sites of a model that FSDP1 shards.

    FSDP1's ``FullyShardedDataParallel`` (unless ``NO_SHARD``) replaces each parameter by a
    flattened piece of it, of any length, on each rank; nothing tells a piece from a whole
    parameter, and statistics of one rank's pieces would be written as the parameter's.

    Raises:
        ValueError: `kinds` names a parameter or optimizer kind and FSDP1 shards `model`.
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")  # not imported: not used
    if fsdp is None or not kinds:
        return
    for name, module in model.named_modules():
        if (
            isinstance(module, fsdp.FullyShardedDataParallel)
            and module.sharding_strategy != fsdp.ShardingStrategy.NO_SHARD
        ):
            raise ValueError(
                error_message(
                    f"layerscope.watch: FullyShardedDataParallel (FSDP1) shards the parameters "
                    f"of {name or 'the model'}, which lenses read ({', '.join(sorted(kinds))}); "
                    "shard with torch.distributed.fsdp.fully_shard (FSDP2) instead, or use "
                    "lenses that read module outputs and their gradients only",
                    "sharded-parameters",
                )
            )


def _pack(w: SiteWindow) -> tuple[Any, ...]:
    state = w.quantile_state.serialize() if w.quantile_state is not None else None
    values = (w.values, w.values_count, w.values_rows)
    return (w.module, w.kind, w.summary, w.histogram, state, values, w.exceed)


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
    kept = [p[5] for p in packed if p[5][0] is not None]
    if kept:  # gatherers' own reductions (attention heads, timesteps), by their rows' rules
        arrays, counts, rows = zip(*kept, strict=True)
        window.values_rows = rows[0]
        window.values, window.values_count = combine_values(arrays, counts, rows[0])
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


def merge_to_rank0(
    steps: Sequence[StepWindows],
    replicated: Collection[str],
    sharded: Collection[str],
    exchange: Exchange,
    where: str,
) -> list[StepWindows]:
    """Combine every rank's windows of the same steps; rank 0 gets them, other ranks ``[]``.

    Every rank must call this at the same flush (collective). `replicated` names the site kinds
    whose values are identical on every rank; rank 0's window of those is used as it is, except
    at the `sharded` sites (DTensors, see :func:`local_part`), whose windows are merged.

    Raises:
        RankMissing: a rank did not take part in time (see :class:`Exchange`).
    """
    rank, size = rank_and_size()
    if size == 1:
        return list(steps)
    payload = [(s.step, s.epoch, {site: _pack(w) for site, w in s.windows.items()}) for s in steps]
    gathered = exchange.gather(payload, where)
    if rank != 0 or gathered is None:
        return []
    by_step: dict[int, tuple[int, dict[str, list[tuple[Any, ...]]]]] = {}
    for from_rank, rank_payload in enumerate(gathered):
        for step, epoch, windows in rank_payload:
            entry = by_step.setdefault(step, (epoch, {}))
            for site, packed in windows.items():
                if from_rank != 0 and packed[1] in replicated and site not in sharded:
                    continue
                entry[1].setdefault(site, []).append(packed)
    return [
        StepWindows(step, epoch, {site: _merge_site(site, p) for site, p in sites.items()})
        for step, (epoch, sites) in sorted(by_step.items())
    ]
