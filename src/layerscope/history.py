"""The in-memory record history of a run, bounded however long the run is."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from operator import attrgetter

from layerscope.records import Record
from layerscope.vocabulary import FINDING, is_finding


class RecordHistory:
    """Keeps the records a Scope emitted, within `limit` records.

    Sinks receive every record when it is flushed; this history is what ``scope.records()``
    and ``scope.to_pandas()`` return. When it would exceed `limit`, it thins itself by keeping
    only steps that are multiples of a stride that doubles each time — the whole run stays
    covered, the oldest part at a coarser resolution. Findings are never thinned, and the
    newest step stays whole.

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
        self._records: list[Record] = []

    def extend(self, records: Iterable[Record]) -> None:
        """Append records, thinning the history while it is over its limit."""
        for step, same_step in itertools.groupby(records, key=attrgetter("step")):
            if self._records and step != self._records[-1].step:
                self._drop_unaligned(self._records[-1].step)
            self._records.extend(same_step)
        while len(self._records) > self.limit and self.stride < 2**40:
            self.stride *= 2
            newest = self._records[-1].step  # the latest step stays whole until the next one
            self._records = [r for r in self._records if self._keeps(r) or r.step == newest]

    def _keeps(self, record: Record) -> bool:
        return record.step % self.stride == 0 or is_finding(record)

    def _drop_unaligned(self, step: int) -> None:
        """Once a newer step arrives, the records of `step` (at the end) go unless kept."""
        if step % self.stride == 0:
            return
        first = len(self._records)
        while first > 0 and self._records[first - 1].step == step:
            first -= 1
        # Only its findings stay (the step is off the stride): no call per record.
        self._records[first:] = [r for r in self._records[first:] if r.quantity == FINDING]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
