"""The in-memory record history of a run, bounded however long the run is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from layerscope.record_columns import RecordColumns
from layerscope.records import Record
from layerscope.vocabulary import FINDING

#: Steps kept as separate column chunks before they are joined into one (a join copies the
#: whole history, so it is done once in this many steps, not every step).
CHUNKS_BEFORE_JOIN = 64


class RecordHistory:
    """Keeps the records a Scope emitted, within `limit` records, as columns.

    Sinks receive every record when it is flushed; this history is what ``scope.records()``
    and ``scope.to_pandas()`` return. The records are kept as
    :class:`~layerscope.record_columns.RecordColumns` (no Python object per record). When it
    would exceed `limit`, it thins itself by keeping only steps that are multiples of a stride
    that doubles each time — the whole run stays covered, the oldest part at a coarser
    resolution. Findings are never thinned, and the newest step stays whole.

    Example:
        >>> h = RecordHistory(limit=4)
        >>> h.extend(Record(s, 0, "loss", "", "loss", "last", float(s)) for s in range(6))
        >>> [r.step for r in h], h.stride
        ([0, 2, 4, 5], 2)
    """

    def __init__(self, limit: int = 100_000) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"RecordHistory: limit must be a positive integer, got {limit!r}")
        self.limit = limit
        self.stride = 1
        self._chunks: list[RecordColumns] = []  # in step order, one or more steps each
        self._size = 0

    def extend(self, records: RecordColumns | Iterable[Record]) -> None:
        """Append records (columns, or Record tuples), thinning while over the limit."""
        columns = records if isinstance(records, RecordColumns) else None
        if columns is None:
            columns = RecordColumns.from_records(records)
        if not len(columns):
            return
        steps = columns.step
        starts = [0, *(np.flatnonzero(steps[1:] != steps[:-1]) + 1).tolist(), len(steps)]
        for begin, end in zip(starts, starts[1:], strict=False):
            same_step = columns if end - begin == len(steps) else columns.take(slice(begin, end))
            self._append_step(same_step)
        while self._size > self.limit and self.stride < 2**40:
            self.stride *= 2
            newest = int(self._chunks[-1].step[-1])  # the latest step stays whole until the next
            self._thin(newest)
        if len(self._chunks) > CHUNKS_BEFORE_JOIN:
            self._chunks = [RecordColumns.concat(self._chunks)]

    def _append_step(self, columns: RecordColumns) -> None:
        step = int(columns.step[0])
        if self._chunks:
            last = int(self._chunks[-1].step[-1])
            if step != last and last % self.stride:
                self._drop_unaligned(last)
        self._chunks.append(columns)
        self._size += len(columns)

    def _thin(self, newest: int) -> None:
        """Keep the steps on the stride, the findings, and every record of step `newest`."""
        chunks = []
        for chunk in self._chunks:
            mask = (chunk.step % self.stride == 0) | (chunk.quantity == FINDING)
            mask |= chunk.step == newest
            chunks.append(chunk if mask.all() else chunk.take(mask))
        self._chunks = [c for c in chunks if len(c)]
        self._size = sum(map(len, self._chunks))

    def _drop_unaligned(self, step: int) -> None:
        """Once a newer step arrives, the records of `step` (at the end) go, but its findings."""
        for i in range(len(self._chunks) - 1, -1, -1):
            chunk = self._chunks[i]
            if chunk.step[-1] != step:
                break
            mask = (chunk.step != step) | (chunk.quantity == FINDING)
            if not mask.all():
                self._size -= len(mask) - int(mask.sum())
                self._chunks[i] = chunk.take(mask)
            if chunk.step[0] != step:
                break
        self._chunks = [c for c in self._chunks if len(c)]

    def columns(self) -> RecordColumns:
        """Every record kept, as one set of columns."""
        if len(self._chunks) != 1:
            self._chunks = [RecordColumns.concat(self._chunks)]
        return self._chunks[0]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.columns())

    def __len__(self) -> int:
        return self._size
