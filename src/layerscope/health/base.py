"""The check protocol: what a health check reads each step, and how its options are checked."""

from __future__ import annotations

import functools
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from layerscope.health.findings import Finding
from layerscope.lenses.state import Stateful
from layerscope.observation import site_module
from layerscope.records import Record
from layerscope.reduce.contract import NOTHING, Needs, SiteWindow
from layerscope.vocabulary import Key


@dataclass
class StepView:
    """What every check reads on a step: the windows, the step's records, the model's layout.

    Attributes:
        step: the step being checked.
        windows: site -> reduced window of the step, in the order the sites were observed
            (forward order for outputs, backward order for output gradients).
        records: every record the lenses emitted for the step.
        module_order: module name -> depth index in ``named_modules()`` order.
        module_types: module name -> module class, for the modules the Health lens selected.
        reads: the record keys the checks find, indexed on the first find (``None``: every
            key). Indexing only those skips most of a step's records.

    """

    step: int
    windows: Mapping[str, SiteWindow]
    records: Sequence[Record]
    module_order: Mapping[str, int]
    module_types: Mapping[str, type[nn.Module]] = field(default_factory=dict)
    reads: frozenset[Key] | None = None
    # key -> finite records: built on the first find, as every check finds.
    _index: dict[tuple[str, str], list[Record]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def find(self, key: Key, tag: str | None = None) -> list[Record]:
        """The step's finite scalar records of `key` (and `tag`, if given).

        `key` is one a lens exports (``GradientNorms.GLOBAL_L2``), or any (quantity, statistic).
        """
        if self._index is None:
            self._index = self._build_index()
        found = self._index.get(key)
        if found is None and self.reads is not None:  # a key no check declared: look it up
            quantity, statistic = key
            found = self._index[key] = [
                r
                for r in self.records
                if r.quantity == quantity and r.statistic == statistic and r.is_finite
            ]
        return [r for r in found or () if tag is None or r.tag == tag]

    def _build_index(self) -> dict[tuple[str, str], list[Record]]:
        reads = self.reads
        if reads is None:
            index: dict[tuple[str, str], list[Record]] = {}
            for r in self.records:
                if r.is_finite:
                    index.setdefault((r.quantity, r.statistic), []).append(r)
            return index
        index = {key: [] for key in reads}
        quantities = {quantity for quantity, _ in reads}  # most records fail this cheaper test
        for r in self.records:
            if r.quantity in quantities:
                found = index.get((r.quantity, r.statistic))
                if found is not None and r.is_finite:
                    found.append(r)
        return index

    def depth(self, site: str) -> int:
        """The depth index of the module a site belongs to (-1 when unknown)."""
        return self.module_order.get(site_module(site), -1)


class Check(Stateful):
    """Base of every health check: a name, options with defaults, and :meth:`run`.

    A subclass sets ``name`` (the option group in ``Health(name={...})``), ``options`` (the
    defaults), and implements :meth:`run`; a check that needs extra per-site statistics also
    overrides :meth:`needs_at`. Options are validated here: an unknown one is a ValueError
    naming it and the accepted ones. What it keeps across steps it declares with
    :meth:`add_state` (:meth:`add_series` for a window of recent values); the Health lens
    checkpoints and merges that with its own.

    Example:
        >>> class Quiet(Check):
        ...     name = "quiet"
        ...     options = {"limit": 1.0}
        ...     def run(self, view):
        ...         return []
        >>> Quiet(limit=2.0).limit
        2.0

    """

    name: ClassVar[str] = "check"
    options: ClassVar[dict[str, Any]] = {}
    #: The keys of the records the check finds, as the lenses that write them export them
    #: (``None``: it may read any); the step's records are indexed for these only.
    reads: ClassVar[frozenset[Key] | None] = None

    def __init__(self, **options: Any) -> None:
        for key, value in options.items():
            if key not in self.options:
                accepted = ", ".join(self.options) or "none"
                raise ValueError(
                    f"Health: check {self.name!r} has no option {key!r}; accepted: {accepted}"
                )
            default = self.options[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if (
                    not isinstance(value, (int, float))
                    or isinstance(value, bool)
                    or math.isnan(value)
                ):
                    raise ValueError(
                        f"Health: option {self.name}.{key} must be a number, got {value!r}"
                    )
            if isinstance(default, tuple) and (
                not isinstance(value, (tuple, list)) or len(value) != len(default)
            ):
                raise ValueError(
                    f"Health: option {self.name}.{key} must be a pair like {default!r}, "
                    f"got {value!r}"
                )
        for key, default in self.options.items():
            value = options.get(key, default)
            setattr(self, key, tuple(value) if isinstance(default, tuple) else value)
        for key in ("window", "min_steps"):
            if key in self.options and (
                not isinstance(getattr(self, key), int) or getattr(self, key) < 1
            ):
                raise ValueError(
                    f"Health: option {self.name}.{key} must be a positive integer, "
                    f"got {getattr(self, key)!r}"
                )

    def add_series(self, name: str, size: int) -> None:
        """Declare a :class:`Series` of the last `size` values per key as state `name`.

        Two merge as one stream: the other's values follow this one's (a later piece of the
        run), the last `size` kept.
        """
        self.add_state(
            name,
            Series(size),
            merge="merge",
            save=Series.plain,
            load=functools.partial(Series.from_plain, size),
        )

    def needs_at(self, module: str, module_type: type[nn.Module], kind: str) -> Needs:
        """What this check reads at a site beyond records: by default the element counts only.

        A check that reads a window's moments (``summary.mean``, ``min``...) asks for them with
        ``Needs()``; without, the site may be read for its norms alone (:attr:`Needs.moments`).
        """
        return NOTHING

    def run(self, view: StepView) -> Iterable[Finding]:
        """What the check sees on this step (the finding log de-duplicates)."""
        raise NotImplementedError

    def finding(
        self,
        kind: str,
        severity: str,
        view: StepView,
        sites: Sequence[str],
        evidence: Mapping[str, float],
        message: str,
        suggestion: str,
    ) -> Finding:
        """A finding at the view's step."""
        return Finding(kind, severity, view.step, tuple(sites), dict(evidence), message, suggestion)


class Series:
    """The last ``size`` values of one quantity per key (a site), for windowed checks.

    Example:
        >>> s = Series(3)
        >>> for v in (1.0, 5.0, 2.0, 4.0):
        ...     s.add("fc1", v)
        >>> s.values("fc1"), s.median("fc1"), s.full("fc1")
        ([5.0, 2.0, 4.0], 4.0, True)

    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: dict[str, deque[float]] = {}

    def add(self, key: str, value: float) -> None:
        """Append a value for `key`, dropping the oldest beyond ``size``."""
        self._values.setdefault(key, deque(maxlen=self.size)).append(value)

    def values(self, key: str) -> list[float]:
        """The kept values of `key`, oldest first."""
        return list(self._values.get(key, ()))

    def count(self, key: str) -> int:
        """How many values of `key` are kept."""
        return len(self._values.get(key, ()))

    def full(self, key: str) -> bool:
        """Whether `key` has ``size`` values."""
        return len(self._values.get(key, ())) >= self.size

    def median(self, key: str) -> float:
        """The median of the kept values (NaN when none)."""
        values = self._values.get(key)
        return median(values) if values else math.nan

    def keys(self) -> list[str]:
        """The keys seen so far."""
        return list(self._values)

    def merge(self, other: Series) -> None:
        """Append `other`'s values after this one's, per key (the last ``size`` kept)."""
        for key, values in other._values.items():
            for value in values:
                self.add(key, value)

    def plain(self) -> dict[str, list[float]]:
        """The kept values per key, oldest first, as plain lists."""
        return {key: list(values) for key, values in self._values.items()}

    @classmethod
    def from_plain(cls, size: int, plain: Mapping[str, Sequence[float]]) -> Series:
        """A series of `size` holding :meth:`plain`'s values."""
        series = cls(size)
        for key, values in plain.items():
            for value in values:
                series.add(str(key), float(value))
        return series


class SortedWindow:
    """The last ``size`` values of one series, kept sorted too: a median is a lookup, not a sort.

    :meth:`add` returns the value it pushed out (``None`` until full), so two windows chain into
    one long stretch split in halves. Values must be finite (NaN does not sort).

    Example:
        >>> w = SortedWindow(3)
        >>> [w.add(v) for v in (4.0, 1.0, 3.0, 2.0)]
        [None, None, None, 4.0]
        >>> w.median(), w.full()
        (2.0, True)

    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._arrived: deque[float] = deque()
        self._sorted: list[float] = []

    def add(self, value: float) -> float | None:
        """Add `value`; return the oldest value when it falls out of the window."""
        self._arrived.append(value)
        insort(self._sorted, value)
        if len(self._arrived) <= self.size:
            return None
        oldest = self._arrived.popleft()
        del self._sorted[bisect_left(self._sorted, oldest)]  # an equal value is the same value
        return oldest

    def full(self) -> bool:
        """Whether the window holds ``size`` values."""
        return len(self._arrived) >= self.size

    def median(self) -> float:
        """The median of the window (NaN when empty), as :func:`median` computes it."""
        return _middle(self._sorted) if self._sorted else math.nan

    def values(self) -> list[float]:
        """The window's values in the order they arrived."""
        return list(self._arrived)


class Stretches:
    """The last two ``size``-long stretches of one series: the newer pushes into the older.

    Example:
        >>> s = Stretches(2)
        >>> for v in (1.0, 2.0, 3.0, 4.0, 5.0):
        ...     s.add(v)
        >>> s.older.values(), s.newer.values()
        ([2.0, 3.0], [4.0, 5.0])

    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.older = SortedWindow(size)
        self.newer = SortedWindow(size)

    def add(self, value: float) -> None:
        """Add `value` to the newer stretch; its oldest value moves to the older one."""
        pushed_out = self.newer.add(value)
        if pushed_out is not None:
            self.older.add(pushed_out)

    def values(self) -> list[float]:
        """Both stretches' values in the order they arrived."""
        return [*self.older.values(), *self.newer.values()]

    def merge(self, other: Stretches) -> None:
        """Continue with `other`'s values, as if they had come after this one's."""
        for value in other.values():
            self.add(value)

    @classmethod
    def from_values(cls, size: int, values: Sequence[float]) -> Stretches:
        """Stretches of `size` that saw `values` (the last ``2 * size`` of them suffice)."""
        stretches = cls(size)
        for value in values:
            stretches.add(float(value))
        return stretches


def short(site: str) -> str:
    """The module part of a site, for messages (``"fc1:output"`` -> ``"fc1"``)."""
    module = site_module(site)
    return module or "model"


def median(values: Iterable[float]) -> float:
    """The median of non-empty `values`, as ``statistics.median`` computes it, but cheaper.

    Example:
        >>> median([3.0, 1.0, 2.0]), median([4.0, 1.0, 2.0, 3.0])
        (2.0, 2.5)

    """
    return _middle(sorted(values))


def _middle(ordered: Sequence[float]) -> float:
    """The median of non-empty sorted values: the middle one, or the mean of the middle two."""
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
