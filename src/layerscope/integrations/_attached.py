"""What the trainer callbacks share: watch settings, the attached Scope, the records it leaves."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from layerscope.lenses import Lens
from layerscope.records import Record
from layerscope.scope import Scope, watch
from layerscope.sinks.base import Sink


class AttachedScope:
    """A Scope attached when training starts and closed when it ends.

    Args:
        lenses: what to observe; ``None`` means :func:`layerscope.lenses.default`.
        every: observe every N-th step.
        sinks: further sinks.
        flush_every: hand records to the sinks every N steps.
    """

    def __init__(
        self,
        lenses: Sequence[Lens] | None = None,
        every: int = 1,
        sinks: Sequence[Sink] = (),
        flush_every: int = 10,
    ) -> None:
        self.lenses = lenses
        self.every = every
        self.sinks = tuple(sinks)
        self.flush_every = flush_every
        self.scope: Scope | None = None
        self._records: list[Record] = []

    def records(self) -> list[Record]:
        """Every record of the current run, or of the last one once it has ended."""
        return self.scope.records() if self.scope is not None else list(self._records)

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        logdir: str | None,
        sinks: Sequence[Sink],
        step: int,
    ) -> Scope:
        """Watch `model` with these settings, counting from the trainer's global `step`."""
        self.scope = watch(
            model,
            optimizer=optimizer,
            lenses=self.lenses,
            every=self.every,
            logdir=logdir,
            sinks=(*sinks, *self.sinks),
            flush_every=self.flush_every,
        )
        self.scope.align_step(step)
        return self.scope

    def close(self) -> None:
        """Close the Scope if one is attached, keeping its records. Safe to call twice."""
        if self.scope is not None:
            scope, self.scope = self.scope, None
            scope.close()
            self._records = scope.records()
