"""The Attention lens: per-head entropy, focus and output norms, and dead heads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from layerscope import stats
from layerscope.gatherers.attention import HEAD_QUANTITIES
from layerscope.lenses.base import EmitContext, Lens
from layerscope.lenses.builtin import TRACKER_PLAIN
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow
from layerscope.vocabulary import Key


class Attention(Lens):
    """Attention weights per head: how spread, how focused, where, and whether the head is alive.

    Selects ``nn.MultiheadAttention`` modules by default; a selected
    ``nn.TransformerEncoderLayer`` / ``DecoderLayer`` is observed through its attention
    submodules, and any other module through ``output_path``, the leaf of its output that holds
    the weights (``"[1]"`` for a module returning ``(output, weights)``).

    Records, for an attention module ``m`` with heads ``h`` (statistic ``"mean"``: the mean
    over batch and query rows of all the step's calls, and across ranks, as if one call had
    seen them all; ``output_l2`` is the norm over all of them, not a mean of norms):

    * site ``"m:attention.head<h>"``, quantities ``"entropy"`` (nats), ``"entropy_ratio"``
      (entropy / log(keys): 0 all mass on one key, 1 uniform), ``"max_weight"``,
      ``"first_key_mass"``, ``"diagonal_mass"`` and ``"output_l2"`` (L2 norm of the head's output
      before the output projection; not for ``output_path`` modules);
    * site ``"m:attention"``, quantity ``"dead_heads"``, statistics ``"count"`` and
      ``"fraction"``: heads whose ``output_l2`` was at most ``dead_tolerance`` times the largest
      head's on each of the last ``window`` observed steps.

    Args:
        output_path: the output leaf holding attention weights, for modules other than
            MultiheadAttention and Transformer layers.
        dead_tolerance: relative output norm under which a head counts as silent.
        window: observed steps a head must stay silent to be called dead.
        **kwargs: selection and schedule, as for :class:`~layerscope.lenses.Lens`.

    Example:
        >>> Attention(output_path="[1]").kinds
        ('attention',)

    """

    default_tag = "attention"
    kinds = ("attention",)
    default_modules = (nn.MultiheadAttention,)
    #: Per head (site ``"m:attention.head<h>"``): each quantity of the gatherer, as a mean.
    HEAD_KEYS: tuple[Key, ...] = tuple(Key(quantity, "mean") for quantity in HEAD_QUANTITIES)
    #: Entropy (nats), and entropy over its largest possible value, per head.
    ENTROPY = Key("entropy", "mean")
    ENTROPY_RATIO = Key("entropy_ratio", "mean")
    #: Heads silent over the window, per attention module (site ``"m:attention"``).
    DEAD_HEADS_COUNT = Key("dead_heads", "count")
    DEAD_HEADS_FRACTION = Key("dead_heads", "fraction")

    def __init__(
        self,
        *,
        output_path: str | None = None,
        dead_tolerance: float = 1e-6,
        window: int = 1,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        if output_path is not None and not isinstance(output_path, str):
            raise ValueError(
                f"Attention: output_path must be a string like '[1]', got {output_path!r}"
            )
        if not isinstance(dead_tolerance, (int, float)) or not 0 <= dead_tolerance < 1:
            raise ValueError(f"Attention: dead_tolerance must be in [0, 1), got {dead_tolerance!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"Attention: window must be a positive integer, got {window!r}")
        self.output_path = output_path
        self.dead_tolerance = float(dead_tolerance)
        self.window = window
        # site -> per head, whether it spoke (was not silent) on each of the last window steps:
        # a head that never spoke over a full window is dead
        self.speaking: dict[str, stats.ActivityTracker]
        self.add_state("speaking", {}, merge="merge", keyed=True, **TRACKER_PLAIN)
        if output_path is not None:
            self.default_modules = None  # any module the user names holds the weights
        super().__init__(**kwargs)

    def needs(self, kind: str) -> Needs:
        """Ask for the gatherer's per-head vectors, whole."""
        return Needs(values=True)

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """Per-head records and the dead-head count of one attention module."""
        v = w.values
        if v is None or v.ndim != 2 or v.shape[0] != len(HEAD_QUANTITIES):
            return []
        out = []
        for head in range(v.shape[1]):
            for row, key in enumerate(self.HEAD_KEYS):
                value = float(v[row, head])
                if key.quantity == "output_l2" and math.isnan(value):
                    continue
                out.append(self.record(ctx, f"{w.site}.head{head}", *key, value))
        norms = v[HEAD_QUANTITIES.index("output_l2")]
        if np.isfinite(norms).all():
            spoke = norms > self.dead_tolerance * norms.max()
            tracker = self.speaking.get(w.site)
            if tracker is None or tracker.units != len(norms):
                tracker = self.speaking[w.site] = stats.ActivityTracker(len(norms), self.window)
            tracker.update(ctx.step, spoke)
            dead = tracker.dead_count()
            out.append(self.record(ctx, w.site, *self.DEAD_HEADS_COUNT, dead))
            out.append(self.record(ctx, w.site, *self.DEAD_HEADS_FRACTION, dead / len(norms)))
        return out
