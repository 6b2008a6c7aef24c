"""The Recurrent lens: RNN/LSTM/GRU outputs and gradients through time, and final states."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from layerscope.gatherers.recurrent import GRAD_ROWS, HIDDEN_ROWS, RECURRENT_MODULES, STATE_ROWS
from layerscope.lenses.base import EmitContext, Lens
from layerscope.lenses.statistics import statistic_key
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow

# (row, quantity, statistic) of each record, keyed as every lens keys these statistics.
_MOMENTS = tuple((row, *statistic_key(row)) for row in ("mean", "std", "l2"))


class Recurrent(Lens):
    """Per-timestep output statistics and gradient norms of recurrent modules, and final states.

    Records for a module ``lstm`` (called once; a k-th call in the same forward reads
    ``lstm#k``):

    * ``"lstm:hidden[t=17]"``: quantity ``"value"`` statistics ``"mean"`` and ``"std"``, and
      quantity ``"l2"`` statistic ``"last"``, over batch and features of the output at time 17
      (for PackedSequence outputs, over the sequences still running at that time);
    * ``"lstm:hidden.grad[t=17]"``: quantity ``"l2"``, statistic ``"last"``: the gradient norm
      w.r.t. that output — shrinking towards early timesteps means vanishing gradients through time;
    * ``"lstm:h_n[l0]"``, ``"lstm:h_n[l0_reverse]"``, ``"lstm:c_n[l1]"``: the same three for
      each layer and direction of the final states.

    Over the step's calls of one site (micro-batches) and across ranks, each number is that of
    everything they saw together at that timestep: means weigh as their items, norms and
    standard deviations are those of the whole, never means of the parts'. Sequences of up to
    ``max_timesteps`` steps report every timestep; longer ones every ``stride``-th (by default
    the smallest stride that keeps ``max_timesteps`` or fewer) and always the last.

    Args:
        stride: report every ``stride``-th timestep; ``None``: as explained above.
        max_timesteps: the most timesteps reported per site when ``stride`` is ``None``.
        **kwargs: selection and schedule, as for :class:`~layerscope.lenses.Lens`.

    Example:
        >>> Recurrent(stride=4).timesteps(10)
        [0, 4, 8, 9]

    """

    default_tag = "recurrent"
    kinds = ("hidden", "hidden.grad", "state")
    default_modules = RECURRENT_MODULES

    def __init__(
        self, *, stride: int | None = None, max_timesteps: int = 256, **kwargs: Any
    ) -> None:  # noqa: ANN401
        if stride is not None and (not isinstance(stride, int) or stride < 1):
            raise ValueError(
                f"Recurrent: stride must be a positive integer or None, got {stride!r}"
            )
        if not isinstance(max_timesteps, int) or max_timesteps < 1:
            raise ValueError(
                f"Recurrent: max_timesteps must be a positive integer, got {max_timesteps!r}"
            )
        self.stride = stride
        self.max_timesteps = max_timesteps
        super().__init__(**kwargs)

    def selects(self, name: str, module: nn.Module) -> bool:
        """Recurrent modules only, also when selected by name."""
        return isinstance(module, RECURRENT_MODULES) and super().selects(name, module)

    def needs(self, kind: str) -> Needs:
        """Ask for the gatherer's per-timestep vectors, whole."""
        return Needs(values=True)

    def timesteps(self, length: int) -> list[int]:
        """Which of `length` timesteps are reported."""
        stride = self.stride or max(1, math.ceil(length / self.max_timesteps))
        chosen = list(range(0, length, stride))
        if length and chosen[-1] != length - 1:
            chosen.append(length - 1)
        return chosen

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """Turn one hidden, hidden.grad or state site into records."""
        v = w.values
        if v is None or v.ndim != 2:
            return []
        rows = {"hidden": HIDDEN_ROWS, "hidden.grad": GRAD_ROWS, "state": STATE_ROWS}[w.kind]
        if v.shape[0] != len(rows):
            return []
        table = dict(zip(rows, v, strict=True))
        out = []
        if w.kind == "state":
            for col in range(v.shape[1]):
                suffix = "_reverse" if table["reverse"][col] > 0.5 else ""
                site = f"{w.site}[l{round(float(table['layer'][col]))}{suffix}]"
                out += [
                    self.record(ctx, site, q, s, float(table[row][col])) for row, q, s in _MOMENTS
                ]
            return out
        moments = _MOMENTS if w.kind == "hidden" else _MOMENTS[2:]
        for col in self.timesteps(v.shape[1]):
            t = table["t"][col]
            if not np.isfinite(t):
                continue
            site = f"{w.site}[t={round(float(t))}]"
            out += [self.record(ctx, site, q, s, float(table[row][col])) for row, q, s in moments]
        return out
