"""The sink protocol: where records go, and how a failing sink is kept from killing training."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from layerscope.records import Record


@runtime_checkable
class Sink(Protocol):
    """Anything that takes batches of records.

    ``write`` is called at each flush with the records produced since the last one;
    ``close`` once at the end of the run. Findings of the health checks arrive as records too.
    """

    def write(self, records: Sequence[Record]) -> None:
        """Consume one flush worth of records."""

    def close(self) -> None:
        """Finish: flush files, render reports."""


class GuardedSink:
    """Wraps a sink so that its first failure is reported once, loudly, and training goes on.

    After a failure the sink is disabled; later calls do nothing. A write interrupted by
    Ctrl-C (or any other BaseException) that the training loop catches is not lost: its
    records go again, with the next ones, at the next write or at close.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.failed = False
        self._interrupted: Sequence[
            Record
        ] = ()  # records queued, or of a write that did not return

    def _call(self, what: str, *args: object) -> None:
        if self.failed:
            return
        try:
            getattr(self.sink, what)(*args)
        except Exception as error:  # noqa: BLE001 - a sink must never kill training
            self.failed = True
            warnings.warn(
                f"layerscope: sink {type(self.sink).__name__}.{what} failed and is disabled "
                f"for the rest of the run: {error!r}",
                RuntimeWarning,
                stacklevel=3,
            )

    def write(self, records: Sequence[Record]) -> None:
        """Forward to the wrapped sink unless it has failed."""
        self.queue(records)
        self.drain()

    def queue(self, records: Sequence[Record]) -> None:
        """Take records for the next :meth:`drain`.

        A scope queues a batch on every sink before draining any, so that an interrupt in one
        sink's write loses the batch for none.
        """
        self._interrupted = [*self._interrupted, *records] if self._interrupted else records

    def drain(self) -> None:
        """Write what was queued; if the write does not return, it stays queued."""
        if self._interrupted:
            self._call("write", self._interrupted)
            self._interrupted = ()

    def close(self) -> None:
        """Forward to the wrapped sink unless it has failed (writing what was interrupted)."""
        self.drain()
        self._call("close")
