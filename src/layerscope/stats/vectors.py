"""Vectors a gatherer reduced itself (per head, per timestep) and their exact merge.

Attention heads and recurrent timesteps are reduced by the gatherer, on the device, into a few
rows of numbers per head or timestep. One site sees several such vectors in a step (micro-batches,
sequences of other lengths) and the ranks each hold their own. Each row declares how it merges
(:class:`VectorRows`), so that the merge of the parts equals the statistic of everything the
parts saw: a mean is weighted by the items behind it, an L2 norm is the norm of the parts' norms,
a standard deviation pools the parts' variances about the merged mean. None averages norms.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A mean over items: the parts weigh as the items behind them.
MEAN = "mean"
#: An L2 norm over items: the parts' norms combine as ``sqrt(sum(norm**2))``.
L2 = "l2"
#: A population standard deviation over items: pooled with the row named ``"mean"``.
STD = "std"
#: The same number in every part that has the column (a timestep, a layer index): kept.
LABEL = "label"
MERGES: tuple[str, ...] = (MEAN, L2, STD, LABEL)


@dataclass(frozen=True)
class VectorRows:
    """The named rows of a gatherer's vectors, each with the rule it merges by.

    Iterating gives the row names in order, ``len()`` their number and :meth:`index` a row's
    position, as for a tuple of names. Build one with :meth:`of`.

    Attributes:
        names: the rows' names, in the order of the vector's first axis.
        merges: each row's rule: :data:`MEAN`, :data:`L2`, :data:`STD` or :data:`LABEL`.
    """

    names: tuple[str, ...]
    merges: tuple[str, ...]

    def __post_init__(self) -> None:
        """Check every rule, and that a standard deviation has its mean to pool about."""
        if len(self.names) != len(self.merges):
            raise ValueError(
                f"VectorRows: {len(self.names)} names but {len(self.merges)} merge rules"
            )
        for name, merge in zip(self.names, self.merges, strict=True):
            if merge not in MERGES:
                raise ValueError(
                    f"VectorRows: row {name!r} merges by {merge!r}; expected one of {MERGES}"
                )
        if (
            STD in self.merges
            and dict(zip(self.names, self.merges, strict=True)).get("mean") != MEAN
        ):
            raise ValueError(
                "VectorRows: a 'std' row pools about a row named 'mean' of rule 'mean'"
            )

    @classmethod
    def of(cls, **merges: str) -> VectorRows:
        """Rows in keyword order: ``VectorRows.of(t=LABEL, mean=MEAN, std=STD, l2=L2)``."""
        return cls(tuple(merges), tuple(merges.values()))

    def index(self, name: str) -> int:
        """The position of row `name`."""
        return self.names.index(name)

    def __len__(self) -> int:
        """How many rows."""
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        """The row names, in order."""
        return iter(self.names)


def combine_values(
    arrays: Sequence[np.ndarray],
    counts: Sequence[Any] | None = None,
    rows: VectorRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the vectors one site handed over, row by row by each row's rule, and their counts.

    Each vector summarizes some items (batch rows, sequences, elements): its count says how many,
    as a number or an array broadcastable to it (one per timestep along the last axis), 1 when
    `counts` or the count is None. `rows` says how each row of 2-D (rows, columns) vectors merges
    (see :class:`VectorRows`); without it every element is a mean. Means merge as
    ``sum(count * vector) / sum(count)`` element by element, so that calls, steps and ranks of
    different batch sizes weigh as their items do; the counts add. Vectors of different lengths
    along the last axis (sequences of different lengths) are padded to the longest with count 0;
    an element no vector has is NaN. A NaN a vector holds stays NaN.

    Returns:
        The merged vector (the dtype of the first) and its counts (float64, of its shape).
    """
    if counts is None:
        counts = [1.0] * len(arrays)
    weights = [
        np.broadcast_to(np.asarray(1.0 if c is None else c, np.float64), a.shape)
        for a, c in zip(arrays, counts, strict=True)
    ]
    if rows is not None and any(a.ndim != 2 or a.shape[0] != len(rows) for a in arrays):
        shapes = sorted({a.shape for a in arrays})
        raise ValueError(f"combine_values: {len(rows)} rows {rows.names} but vectors of {shapes}")
    if len(arrays) == 1:
        return arrays[0], np.array(weights[0])
    if any(a.shape[:-1] != arrays[0].shape[:-1] for a in arrays):
        return arrays[-1], np.array(weights[-1])  # incomparable layouts: keep the latest
    width = max(a.shape[-1] for a in arrays)
    total = np.zeros((*arrays[0].shape[:-1], width))
    weighted = np.zeros_like(total)
    squares = np.zeros_like(total)
    labels = np.full_like(total, np.nan)
    parts = []
    for a, w in zip(arrays, weights, strict=True):
        columns = (..., slice(0, a.shape[-1]))
        has = w > 0
        a = a.astype(np.float64)
        total[columns] += w
        weighted[columns] += np.where(has, w * a, 0.0)  # a NaN with weight stays
        squares[columns] += np.where(has, a * a, 0.0)
        labels[columns] = np.where(has, a, labels[columns])
        parts.append((columns, has, a, w))
    counted = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(counted, weighted / np.where(counted, total, 1.0), np.nan)
        for row, merge in enumerate(rows.merges if rows is not None else ()):
            if merge == L2:
                merged[row] = np.where(counted[row], np.sqrt(squares[row]), np.nan)
            elif merge == LABEL:
                merged[row] = labels[row]
            elif merge == STD:
                merged[row] = _pooled_std(parts, row, rows.index("mean"), merged, total, width)
    return merged.astype(arrays[0].dtype), total


def _pooled_std(
    parts: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]],
    row: int,
    mean_row: int,
    merged: np.ndarray,
    total: np.ndarray,
    width: int,
) -> np.ndarray:
    """Pool the parts' standard deviations about the merged mean (no sum of squares cancels)."""
    spread = np.zeros(width)
    for columns, has, a, w in parts:
        mean = merged[mean_row][columns[-1]]
        deviation = a[row] ** 2 + (a[mean_row] - mean) ** 2
        spread[columns[-1]] += np.where(has[row], w[row] * deviation, 0.0)
    counted = total[row] > 0
    return np.where(counted, np.sqrt(spread / np.where(counted, total[row], 1.0)), np.nan)
