"""The statistics a lens can ask for, and how each is read off a site's reduced window."""

from __future__ import annotations

import math
from collections.abc import Callable

from layerscope.reduce.contract import SiteWindow
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

#: The statistics a norms-only summary answers (the L2 norm and the element counts, without
#: moments: :attr:`~layerscope.reduce.contract.Needs.moments`).
NORMS_ONLY_STATISTICS = frozenset({"l2", "rms", "nonfinite_fraction"})

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
