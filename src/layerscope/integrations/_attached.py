"""What the trainer callbacks share: watch settings, the attached Scope, the records it leaves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from layerscope.lenses import Lens
from layerscope.records import Record
from layerscope.scope import Scope, watch
from layerscope.sinks.base import Sink


class AttachedScope:
    """A Scope attached when training starts and closed when it ends.

    Under torch.distributed the Scope is attached on every rank: each rank's activations and
    losses are part of the statistics, and its flushes are collectives every rank joins. Rank 0
    writes and holds the records.

    Args:
        lenses: what to observe; ``None`` means :func:`layerscope.default_lenses`.
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
        self._findings: list[Any] = []
        self._last_state: dict[str, Any] = {}  # the last run's, once it has ended
        self._resume: dict[str, Any] | None = None  # to load into the next Scope attached

    def records(self) -> list[Record]:
        """Every record of the current run, or of the last one once it has ended (rank 0)."""
        return self.scope.records() if self.scope is not None else list(self._records)

    def findings(self) -> list[Any]:
        """The health findings of the current run, or of the last one once it has ended (rank 0).

        :class:`layerscope.health.Finding` objects, oldest first, as :meth:`Scope.findings`.
        """
        return self.scope.findings() if self.scope is not None else list(self._findings)

    def scope_state(self) -> dict[str, Any]:
        """The Scope's :meth:`~layerscope.Scope.state_dict`: of the current run, else the last.

        Local to this rank (never a collective); empty before any run.
        """
        if self.scope is not None:
            return self.scope.state_dict()
        return dict(self._last_state)

    def resume_from(self, state: dict[str, Any]) -> None:
        """Load a :meth:`scope_state` into the Scope now, or into the next one attached."""
        if not state:
            return
        if self.scope is not None:
            self.scope.load_state_dict(state)
        else:
            self._resume = dict(state)

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        logdir: str | None,
        sinks: Sequence[Sink],
        step: int,
    ) -> Scope:
        """Watch `model` with these settings, counting from the trainer's global `step`.

        A state given to :meth:`resume_from` before training started is loaded first.
        """
        scope = watch(
            model,
            optimizer=optimizer,
            lenses=self.lenses,
            every=self.every,
            logdir=logdir,
            sinks=(*sinks, *self.sinks),
            flush_every=self.flush_every,
        )
        if self._resume is not None:
            state, self._resume = self._resume, None
            try:
                scope.load_state_dict(state)
            except Exception:
                scope.close()
                raise
        scope.align_step(step)
        self.scope = scope
        return scope

    def close(self, failed: bool = False) -> None:
        """Close the Scope if one is attached, keeping its records. Safe to call twice.

        Args:
            failed: training raised on this rank: close without waiting for the other ranks
                (they would never come to the exchange), and without the pending steps.
        """
        if self.scope is not None:
            scope, self.scope = self.scope, None
            scope.close(failed=failed)
            self._records = scope.records()
            self._findings = scope.findings()
            self._last_state = scope.state_dict()
