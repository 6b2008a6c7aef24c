"""Records: the tidy rows every lens emits and every sink consumes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class HistogramValue:
    """A histogram carried by a record: bin edges (length ``len(counts) + 1``) and counts.

    Values below the first edge or above the last are counted in ``underflow`` / ``overflow``.

    Example:
        >>> h = HistogramValue(edges=(0.0, 1.0, 2.0), counts=(3, 4))
        >>> h.total
        7
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    underflow: int = 0
    overflow: int = 0

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError(
                f"HistogramValue: {len(self.edges)} edges need {len(self.edges) - 1} counts, "
                f"got {len(self.counts)}"
            )

    @property
    def total(self) -> int:
        """Number of values counted, out-of-range ones included."""
        return int(sum(self.counts)) + self.underflow + self.overflow

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Edges (float64) and counts (int64) as numpy arrays."""
        return np.asarray(self.edges, dtype=np.float64), np.asarray(self.counts, dtype=np.int64)


class Record(NamedTuple):
    """One observation of one statistic, as a tidy row.

    An immutable named tuple, cheap to build: a run makes hundreds a step.

    Attributes:
        step: optimizer step (or ``scope.step()`` count) the value belongs to.
        epoch: epoch counter at that step (``scope.epoch()`` advances it).
        tag: the group a frontend plots together; a lens names it ("activations", "gradients").
        site: where it was observed: a module's qualified name and what was observed there,
            ``"encoder.0.linear1:output"``, ``"fc2:weight.grad"``; ``""`` for whole-net values
            (the loss, the global gradient norm).
        quantity: what per-observation number is described: ``"value"`` (the elements
            themselves), ``"l2"`` (the tensor's norm), ``"dead"``, ``"share"``, ``"loss"``...
        statistic: how it is reduced: ``"mean"``, ``"std"``, ``"min"``, ``"max"``, ``"median"``,
            ``"iqr"``, ``"fraction"``, ``"last"``, ``"histogram"``...
        value: the number; ``None`` when the record carries a histogram.
        histogram: the distribution, for ``statistic == "histogram"``.
        text: a line of prose for records that say something (health findings: what is wrong
            and what to try); ``None`` for plain numbers.

    Example:
        >>> r = Record(step=3, epoch=0, tag="gradients", site="fc1:weight.grad",
        ...            quantity="l2", statistic="mean", value=0.25)
        >>> r.name
        'gradients/fc1:weight.grad/l2.mean'
    """

    step: int
    epoch: int
    tag: str
    site: str
    quantity: str
    statistic: str
    value: float | None = None
    histogram: HistogramValue | None = None
    text: str | None = None

    @property
    def name(self) -> str:
        """``tag/site/quantity.statistic``, the scalar's name in TensorBoard and tables."""
        parts = [self.tag, self.site, f"{self.quantity}.{self.statistic}"]
        return "/".join(p for p in parts if p)

    @property
    def is_finite(self) -> bool:
        """Whether the record holds a finite scalar."""
        return self.value is not None and math.isfinite(self.value)


#: The columns of a table of records (:func:`records_to_rows`, ``to_pandas``).
RECORD_COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "tag",
    "site",
    "quantity",
    "statistic",
    "value",
    "text",
)


def records_to_rows(records: Iterable[Record]) -> list[tuple[object, ...]]:
    """Scalar records as tuples in :data:`RECORD_COLUMNS` order (histogram records skipped)."""
    return [
        (r.step, r.epoch, r.tag, r.site, r.quantity, r.statistic, r.value, r.text)
        for r in records
        if r.histogram is None
    ]


def select(
    records: Sequence[Record],
    *,
    step: int | None = None,
    tag: str | None = None,
    site: str | None = None,
    quantity: str | None = None,
    statistic: str | None = None,
) -> list[Record]:
    """Records matching every given field exactly."""
    return [
        r
        for r in records
        if (step is None or r.step == step)
        and (tag is None or r.tag == tag)
        and (site is None or r.site == site)
        and (quantity is None or r.quantity == quantity)
        and (statistic is None or r.statistic == statistic)
    ]
