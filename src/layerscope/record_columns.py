"""Records as columns: what a run keeps, filters and tabulates without one object per record.

Lenses emit :class:`~layerscope.records.Record` tuples, a step at a time; the history turns
them into columns a few thousand at a time and keeps those (some 75 bytes a record, against
some 150 for a tuple and its float), and the pandas table is built from the columns. A
:class:`Record` exists again only when someone iterates or indexes the columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from layerscope.records import Record


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _optional(values: tuple[Any, ...]) -> np.ndarray:
    """A column that is None but for a few records (histograms, findings' text)."""
    if values.count(None) == len(values):  # by identity: no compare per element
        return np.full(len(values), None, dtype=object)
    return _objects(values)


class RecordColumns(Sequence[Record]):
    """Records in compact columns, read as :class:`Record` tuples on demand.

    Columns: ``step`` and ``epoch`` (int64), ``tag``, ``site``, ``quantity``, ``statistic``
    (object arrays of str), ``value`` (float64; NaN where a record has no number), ``valued``
    (bool: the record has a number, possibly NaN), ``histogram`` and ``text`` (object arrays,
    mostly None). A sequence of records: ``len``, iteration and indexing give ``Record``
    tuples equal to the ones the columns were made of.

    Example:
        >>> cols = RecordColumns.from_records(
        ...     [Record(1, 0, "loss", "", "loss", "last", 0.5), Record(1, 0, "loss", "", "x", "y")]
        ... )
        >>> len(cols), cols[0].value, cols[1].value
        (2, 0.5, None)
        >>> cols.value.tolist(), cols.valued.tolist()
        ([0.5, nan], [True, False])
    """

    #: The columns, in the order the constructor takes them.
    COLUMNS: tuple[str, ...] = (*Record._fields, "valued")
    __slots__ = COLUMNS

    def __init__(
        self,
        step: np.ndarray,
        epoch: np.ndarray,
        tag: np.ndarray,
        site: np.ndarray,
        quantity: np.ndarray,
        statistic: np.ndarray,
        value: np.ndarray,
        histogram: np.ndarray,
        text: np.ndarray,
        valued: np.ndarray,
    ) -> None:
        self.step, self.epoch = step, epoch
        self.tag, self.site, self.quantity, self.statistic = tag, site, quantity, statistic
        self.value, self.histogram, self.text, self.valued = value, histogram, text, valued

    # -- making columns ----------------------------------------------------------------------
    @classmethod
    def empty(cls) -> RecordColumns:
        """Columns of no record."""
        return cls.from_records(())

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> RecordColumns:
        """Columns of `records` (one pass in C: the tuples are transposed, not visited)."""
        rows = list(records)
        if not rows:
            i, o = np.empty(0, np.int64), np.empty(0, object)
            return cls(i, i, o, o, o, o, np.empty(0), o, o, np.empty(0, bool))
        step, epoch, tag, site, quantity, statistic, value, histogram, text = zip(
            *rows, strict=True
        )
        numbers = np.array(value, dtype=np.float64)  # None becomes NaN
        valued = np.ones(len(rows), dtype=bool)
        for i in np.flatnonzero(np.isnan(numbers)).tolist():  # a few: tell None from NaN
            valued[i] = value[i] is not None
        return cls(
            np.array(step, dtype=np.int64),
            np.array(epoch, dtype=np.int64),
            _objects(tag),
            _objects(site),
            _objects(quantity),
            _objects(statistic),
            numbers,
            _optional(histogram),
            _optional(text),
            valued,
        )

    @classmethod
    def concat(cls, parts: Iterable[RecordColumns | Sequence[Record]]) -> RecordColumns:
        """The records of every part in order; parts may be columns or lists of records."""
        columns: list[RecordColumns] = []
        pending: list[Record] = []  # neighbouring lists of records become columns together
        for part in parts:
            if isinstance(part, RecordColumns):
                if pending:
                    columns.append(cls.from_records(pending))
                    pending = []
                if len(part):
                    columns.append(part)
            else:
                pending.extend(part)
        if pending:
            columns.append(cls.from_records(pending))
        if len(columns) == 1:
            return columns[0]
        if not columns:
            return cls.empty()
        return cls(*(np.concatenate([getattr(c, n) for c in columns]) for n in cls.COLUMNS))

    # -- reading -----------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> RecordColumns:
        """The records at `rows` (integer indices or a boolean mask), as columns."""
        return RecordColumns(*(getattr(self, n)[rows] for n in self.COLUMNS))

    def __len__(self) -> int:
        return len(self.step)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return list(self.take(np.arange(len(self))[index]))
        return self.take(np.array([index], dtype=np.int64)).records()[0]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def records(self) -> list[Record]:
        """Every record, as :class:`Record` tuples."""
        value = self.value.astype(object)
        value[~self.valued] = None
        columns = (
            self.step.tolist(),
            self.epoch.tolist(),
            self.tag.tolist(),
            self.site.tolist(),
            self.quantity.tolist(),
            self.statistic.tolist(),
            value.tolist(),
            self.histogram.tolist(),
            self.text.tolist(),
        )
        return list(map(Record._make, zip(*columns, strict=True)))

    def __repr__(self) -> str:
        return f"RecordColumns({len(self)} records)"
