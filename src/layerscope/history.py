"""The in-memory record history of a run, bounded however long the run is."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from operator import itemgetter

from layerscope.record_columns import RecordColumns
from layerscope.records import Record
from layerscope.vocabulary import FINDING

#: Records kept as tuples before they join the columns: turned into columns a few thousand at
#: a time, a record costs a fraction of what one step's records made into columns each step
#: would (numpy's fixed cost per call dominates a step of a small model).
TAIL_RECORDS = 4096
_STEP, _QUANTITY = Record._fields.index("step"), Record._fields.index("quantity")


class RecordHistory:
    """Keeps the records a Scope emitted, within `limit` records, as columns.

    Sinks receive every record when it is flushed; this history is what ``scope.records()``
    and ``scope.to_pandas()`` return. The records are kept as
    :class:`~layerscope.record_columns.RecordColumns` (numpy arrays; strings shared, not one
    Python object per record), the newest few thousand as plain tuples until they join the
    columns. When the history would exceed `limit`, it thins itself by keeping only
    steps that are multiples of a stride that doubles each time — the whole run stays covered,
    the oldest part at a coarser resolution. Findings are never thinned, and the newest step
    stays whole.

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
        self._chunks: list[RecordColumns] = []  # the older records, in step order
        self._settled = 0  # records in the chunks
        # The newer ones, after them; the newest step whole. Plain tuples, not Records: the
        # garbage collector stops tracking a tuple of numbers and strings (never a NamedTuple's),
        # so thousands of them living a few dozen steps do not bring on full collections.
        self._tail: list[tuple] = []

    def extend(self, records: Iterable[Record]) -> None:
        """Append records, thinning the history while it is over its limit."""
        tail = self._tail
        for step, same_step in itertools.groupby(records, key=itemgetter(_STEP)):
            if tail and step != tail[-1][_STEP]:
                self._drop_unaligned(tail[-1][_STEP])
            tail.extend(map(tuple, same_step))
        while len(self) > self.limit and self.stride < 2**40:
            self.stride *= 2
            self._thin()
        if len(tail) >= TAIL_RECORDS:
            self._settle()

    def _thin(self) -> None:
        """Keep the steps on the stride, the findings, and the newest step whole."""
        newest = self._tail[-1][_STEP]  # in the tail: _settle leaves the newest step there
        chunks = []
        for chunk in self._chunks:
            keep = (chunk.step % self.stride == 0) | (chunk.quantity == FINDING)
            chunks.append(chunk if keep.all() else chunk.take(keep))
        self._chunks = [chunk for chunk in chunks if len(chunk)]
        self._settled = sum(map(len, self._chunks))
        self._tail = [
            r
            for r in self._tail
            if r[_STEP] % self.stride == 0 or r[_QUANTITY] == FINDING or r[_STEP] == newest
        ]

    def _drop_unaligned(self, step: int) -> None:
        """Once a newer step arrives, the records of `step` (at the end) go but its findings."""
        if step % self.stride == 0:
            return
        tail, first = self._tail, self._start_of_last_step()
        # Only its findings stay (the step is off the stride): no call per record.
        tail[first:] = [r for r in tail[first:] if r[_QUANTITY] == FINDING]

    def _start_of_last_step(self) -> int:
        """Where the records of the tail's last step begin in the tail (0 when it is empty)."""
        tail = self._tail
        first = len(tail)
        while first > 0 and tail[first - 1][_STEP] == tail[-1][_STEP]:
            first -= 1
        return first

    def _settle(self) -> None:
        """The tail but its newest step joins the columns, as a chunk of its own.

        The newest step stays in the tail, whole: more of its records may come, and whether
        it is kept is decided when the next step arrives.
        """
        tail, first = self._tail, self._start_of_last_step()
        if first:
            self._chunks.append(RecordColumns.from_records(tail[:first]))
            self._settled += first
            del tail[:first]

    def columns(self) -> RecordColumns:
        """Every record kept, as one set of columns."""
        if len(self._chunks) > 1:  # joined once, for this read and the next ones
            self._chunks = [RecordColumns.concat(self._chunks)]
        return RecordColumns.concat((*self._chunks, self._tail))

    def __iter__(self) -> Iterator[Record]:
        return itertools.chain(*self._chunks, map(Record._make, self._tail))

    def __len__(self) -> int:
        return self._settled + len(self._tail)
