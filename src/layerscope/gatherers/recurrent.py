"""Recurrent gatherer: per-timestep statistics of RNN/LSTM/GRU outputs and their gradients.

A forward hook reduces the whole output sequence at once — one batched reduction over the time
axis, never one per timestep — to a small (rows, timesteps) tensor, and registers a tensor hook
on the output that does the same with its gradient during backward. Final hidden and cell
states are reduced per layer and direction. PackedSequence outputs are reduced segment-wise
(each timestep over the sequences still running), so padding never enters a statistic.

A module called several times in one forward (weight sharing, unrolled loops, recursion) gets a
call index on its sites: the first call is ``"cell:hidden"``, the next ``"cell#1:hidden"``,
``"cell#2:hidden"``... The counter resets at each forward of the root model and at each step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import GatherContext, Gatherer, contained
from layerscope.observation import site_name
from layerscope.stats.vectors import L2, LABEL, MEAN, STD, VectorRows

#: Rows of the tensor observed at ``"<rnn>:hidden"`` (one column per timestep).
HIDDEN_ROWS = VectorRows.of(t=LABEL, mean=MEAN, std=STD, l2=L2)
#: Rows of the tensor observed at ``"<rnn>:hidden.grad"``.
GRAD_ROWS = VectorRows.of(t=LABEL, l2=L2)
#: Rows of the tensors observed at ``"<rnn>:h_n"`` / ``"<rnn>:c_n"`` (one column per layer and
#: direction, in torch's order: layer-major, forward before reverse).
STATE_ROWS = VectorRows.of(layer=LABEL, reverse=LABEL, mean=MEAN, std=STD, l2=L2)
#: Modules the gatherer understands.
RECURRENT_MODULES: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)


def _time_major(flat: torch.Tensor) -> torch.Tensor:
    return flat.detach().float().reshape(flat.shape[0], -1)


def per_timestep(sequence: torch.Tensor) -> int:
    """Elements each timestep of a time-major (T, ...) tensor holds: what its statistics average."""
    return sequence.numel() // max(sequence.shape[0], 1)


def packed_per_timestep(data: torch.Tensor, batch_sizes: torch.Tensor) -> np.ndarray:
    """Elements each timestep of a PackedSequence's ``data`` holds (host batch sizes, no sync)."""
    return batch_sizes.numpy().astype(np.float64) * per_timestep(data)


def _time_first(sequence: torch.Tensor, time_dim: int | None) -> torch.Tensor:
    """Put time first; ``time_dim=None``: one timestep of a cell."""
    if time_dim is None:
        return sequence[None]
    return sequence.transpose(0, time_dim) if time_dim else sequence


def timestep_statistics(sequence: torch.Tensor, with_moments: bool = True) -> torch.Tensor:
    """(rows, T) statistics of a time-major (T, ...) tensor, each over everything but time.

    Rows are :data:`HIDDEN_ROWS` with moments, :data:`GRAD_ROWS` without.
    """
    x = _time_major(sequence)
    t = torch.arange(x.shape[0], device=x.device, dtype=torch.float32)
    l2 = torch.linalg.vector_norm(x, dim=1)
    if not with_moments:
        return torch.stack([t, l2])
    var, mean = torch.var_mean(x, dim=1, correction=0)
    return torch.stack([t, mean, var.sqrt(), l2])


def packed_statistics(
    data: torch.Tensor, batch_sizes: torch.Tensor, with_moments: bool = True
) -> torch.Tensor:
    """Compute the same statistics for a PackedSequence's ``data`` (rows grouped by timestep)."""
    x = data.detach().float().reshape(data.shape[0], -1)
    steps = batch_sizes.shape[0]
    # batch_sizes live on the host; a pageable host-to-device copy would synchronise
    host = batch_sizes.pin_memory() if x.device.type == "cuda" else batch_sizes
    sizes = host.to(x.device, non_blocking=True)
    index = torch.repeat_interleave(
        torch.arange(steps, device=x.device), sizes, output_size=x.shape[0]
    )
    t = torch.arange(steps, device=x.device, dtype=torch.float32)
    l2 = torch.zeros(steps, device=x.device).index_add_(0, index, x.square().sum(1)).sqrt()
    if not with_moments:
        return torch.stack([t, l2])
    n = sizes.float() * x.shape[1]
    mean = torch.zeros(steps, device=x.device).index_add_(0, index, x.sum(1)) / n
    m2 = torch.zeros(steps, device=x.device).index_add_(
        0, index, (x - mean[index, None]).square().sum(1)
    )
    return torch.stack([t, mean, (m2 / n).sqrt(), l2])


def state_statistics(state: torch.Tensor, directions: int) -> torch.Tensor:
    """(rows, layers·directions) statistics of h_n or c_n; rows :data:`STATE_ROWS`."""
    x = _time_major(state)
    index = torch.arange(x.shape[0], device=x.device)
    var, mean = torch.var_mean(x, dim=1, correction=0)
    l2 = torch.linalg.vector_norm(x, dim=1)
    return torch.stack(
        [(index // directions).float(), (index % directions).float(), mean, var.sqrt(), l2]
    )


class RecurrentGatherer(Gatherer):
    """Observes recurrent modules: kinds ``"hidden"``, ``"hidden.grad"`` and ``"state"``.

    Sites per call: ``"<rnn>:hidden"`` ((4, T): rows :data:`HIDDEN_ROWS`),
    ``"<rnn>:hidden.grad"`` ((2, T): :data:`GRAD_ROWS`) and, for ``nn.RNN``/``LSTM``/``GRU``,
    ``"<rnn>:h_n"`` and (LSTM) ``"<rnn>:c_n"`` ((5, layers·directions): :data:`STATE_ROWS`).
    Cells (``nn.LSTMCell``...) give one timestep per call; an unrolled loop shows up as call
    indices. Each tensor comes with the elements each column averages (its count), so that
    calls of different batch sizes and lengths merge weighted by them. The ``Recurrent`` lens
    turns these into per-timestep records.
    """

    kinds = ("hidden", "hidden.grad", "state")

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._closed = False
        self._calls: dict[str, int] = {}
        self._handles: list[RemovableHandle] = []
        for name, module in context.modules_wanting(*self.kinds).items():
            if not isinstance(module, RECURRENT_MODULES):
                raise ValueError(
                    f"Recurrent: module {name or 'model'!r} is a {type(module).__name__}; the "
                    "recurrent gatherer reads nn.RNN, nn.LSTM, nn.GRU and their cells only"
                )
            hook = partial(self._forward_hook, name, frozenset(context.wanted[name]))
            self._handles.append(module.register_forward_hook(hook))
        root = context.modules.get("")
        if root is not None and self._handles:
            self._handles.append(root.register_forward_pre_hook(self._new_forward))

    @contained
    def _new_forward(self, module: nn.Module, args: Any) -> None:  # noqa: ANN401
        self._calls.clear()

    def before_step(self) -> None:
        """Restart the call counters."""
        self._calls.clear()

    @contained
    def _forward_hook(
        self,
        name: str,
        wanted: frozenset[str],
        module: nn.Module,
        args: Any,
        output: Any,  # noqa: ANN401
    ) -> None:
        enabled = self.context.enabled
        wanted = frozenset(kind for kind in wanted if enabled(name, kind))
        if self._closed or not wanted or not torch.is_grad_enabled():
            return
        call = self._calls.get(name, 0)
        self._calls[name] = call + 1
        prefix = name or "model"
        prefix = prefix if call == 0 else f"{prefix}#{call}"
        if isinstance(module, nn.RNNCellBase):  # one timestep: (B, H) or (H,)
            sequence, state = (output[0] if isinstance(output, tuple) else output), None
            time_dim: int | None = None
        else:
            sequence, state = output
            time_dim = (
                1
                if module.batch_first
                and not isinstance(sequence, PackedSequence)
                and sequence.dim() == 3
                else 0
            )
        observe = self.context.observe
        if isinstance(sequence, PackedSequence):
            target, sizes = sequence.data, sequence.batch_sizes
            if "hidden" in wanted:
                values = packed_statistics(target, sizes)
                counts = packed_per_timestep(target, sizes)
                observe(name, "hidden", site_name(prefix, "hidden"), values, counts, HIDDEN_ROWS)
        else:
            target, sizes = sequence, None
            if "hidden" in wanted:
                timed = _time_first(sequence, time_dim)
                values = timestep_statistics(timed)
                count = per_timestep(timed)
                observe(name, "hidden", site_name(prefix, "hidden"), values, count, HIDDEN_ROWS)
        if "hidden.grad" in wanted and target.requires_grad:
            # on the output itself: a view made here would not be part of the graph
            hook = partial(self._grad_hook, name, site_name(prefix, "hidden.grad"), sizes, time_dim)
            target.register_hook(hook)
        if "state" in wanted and state is not None:
            directions = 2 if module.bidirectional else 1
            states = state if isinstance(state, tuple) else (state,)
            for label, tensor in zip(("h_n", "c_n"), states, strict=False):
                values = state_statistics(tensor, directions)
                count = per_timestep(tensor)
                observe(name, "state", site_name(prefix, label), values, count, STATE_ROWS)

    @contained
    def _grad_hook(
        self,
        name: str,
        site: str,
        sizes: torch.Tensor | None,
        time_dim: int | None,
        grad: torch.Tensor,
    ) -> None:
        if self._closed:
            return
        if sizes is None:
            timed = _time_first(grad, time_dim)
            values = timestep_statistics(timed, with_moments=False)
            count: Any = per_timestep(timed)
        else:
            values = packed_statistics(grad, sizes, with_moments=False)
            count = packed_per_timestep(grad, sizes)
        self.context.observe(name, "hidden.grad", site, values, count, GRAD_ROWS)

    def remove(self) -> None:
        """Remove every hook; tensor hooks still pending on live graphs become no-ops."""
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
