"""The statistics a lens can ask for, and how each is read off a site's reduced window."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from layerscope.reduce.contract import FIELD_INDEX, SiteWindow
from layerscope.stats.tensors import QUANTILE_LEVELS
from layerscope.vocabulary import HISTOGRAM, LAST, VALUE, Key


def _quantile(level: float) -> Callable[[SiteWindow], float]:
    def read(w: SiteWindow) -> float:
        return w.quantiles[level] if w.quantiles else math.nan

    return read


def _safe_ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


#: Statistics of a tensor's elements: recorded as quantity "value", statistic NAME.
VALUE_STATISTICS: dict[str, Callable[[SiteWindow], float]] = {
    "mean": lambda w: w.summary.mean,
    "std": lambda w: math.sqrt(w.summary.variance) if w.summary.count else math.nan,
    "var": lambda w: w.summary.variance,
    "min": lambda w: w.summary.min,
    "max": lambda w: w.summary.max,
    "zero_fraction": lambda w: _safe_ratio(w.summary.zeros, w.summary.size),
    "nonfinite_fraction": lambda w: _safe_ratio(w.summary.nonfinite, w.summary.size),
    "median": _quantile(0.5),
    "iqr": lambda w: (w.quantiles[0.75] - w.quantiles[0.25]) if w.quantiles else math.nan,
    **{f"q{round(level * 100):02d}": _quantile(level) for level in QUANTILE_LEVELS},
}

#: Norms of the whole tensor: recorded as quantity NAME, statistic "last".
NORM_STATISTICS: dict[str, Callable[[SiteWindow], float]] = {
    "l1": lambda w: w.summary.l1,
    "l2": lambda w: w.summary.l2,
    "rms": lambda w: w.summary.l2 / math.sqrt(w.summary.count) if w.summary.count else math.nan,
}

ColumnReader = Callable[[np.ndarray], np.ndarray]

_SIZE, _COUNT, _MEAN, _M2, _MIN, _MAX, _L1, _L2, _ZEROS, _NONFINITE = (
    FIELD_INDEX[name]
    for name in ("size", "count", "mean", "m2", "min", "max", "l1", "l2", "zeros", "nonfinite")
)


def _per(numerator: int, denominator: int) -> ColumnReader:
    """Column `numerator` over column `denominator`, NaN where the denominator is 0."""

    def read(f: np.ndarray) -> np.ndarray:
        den = f[:, denominator]
        return np.where(den != 0, f[:, numerator] / den, np.nan)

    return read


def _rms(f: np.ndarray) -> np.ndarray:
    count = f[:, _COUNT]
    return np.where(count != 0, f[:, _L2] / np.sqrt(count), np.nan)


#: The statistics readable for many sites at once off a step's field table
#: (:class:`~layerscope.reduce.contract.SiteTable` rows): the same numbers, to the bit, as
#: :data:`VALUE_STATISTICS` and :data:`NORM_STATISTICS` read off one window. (Callers silence
#: numpy's warnings for the divisions by zero that ``np.where`` discards.)
COLUMN_STATISTICS: dict[str, ColumnReader] = {
    "mean": lambda f: f[:, _MEAN],
    "std": lambda f: np.sqrt(_per(_M2, _COUNT)(f)),
    "var": _per(_M2, _COUNT),
    "min": lambda f: f[:, _MIN],
    "max": lambda f: f[:, _MAX],
    "zero_fraction": _per(_ZEROS, _SIZE),
    "nonfinite_fraction": _per(_NONFINITE, _SIZE),
    "l1": lambda f: f[:, _L1],
    "l2": lambda f: f[:, _L2],
    "rms": _rms,
}

QUANTILE_STATISTICS = frozenset(
    {"median", "iqr", *(f"q{round(level * 100):02d}" for level in QUANTILE_LEVELS)}
)
ALL_STATISTICS: tuple[str, ...] = (*VALUE_STATISTICS, *NORM_STATISTICS, HISTOGRAM)


def statistic_key(name: str) -> Key:
    """The key a lens records statistic `name` under.

    Norms are quantity NAME statistic ``"last"`` (one number per tensor), the others quantity
    ``"value"`` statistic NAME (a statistic of the tensor's elements).

    Example:
        >>> statistic_key("l2"), statistic_key("median")
        (Key(quantity='l2', statistic='last'), Key(quantity='value', statistic='median'))
    """
    if name in NORM_STATISTICS:
        return Key(name, LAST)
    if name in VALUE_STATISTICS or name == HISTOGRAM:
        return Key(VALUE, name)
    raise ValueError(f"statistic_key: unknown statistic {name!r}; choose from {ALL_STATISTICS}")


def check_statistics(owner: str, statistics: tuple[str, ...]) -> tuple[str, ...]:
    """Validate statistic names for `owner` (a lens), raising ValueError naming the bad one."""
    if not statistics:
        raise ValueError(f"{owner}: statistics is empty; choose from {', '.join(ALL_STATISTICS)}")
    for name in statistics:
        if name not in ALL_STATISTICS:
            raise ValueError(
                f"{owner}: unknown statistic {name!r}; choose from {', '.join(ALL_STATISTICS)}"
            )
    return tuple(dict.fromkeys(statistics))
