"""Declared state: what a lens or check keeps across steps, and how two of them merge.

A lens or check that keeps anything across steps declares it once, in its ``__init__``, with
:meth:`Stateful.add_state`: a name, a default, the rule by which two such states merge, and,
for values that are not plain Python, how they become plain and back. Checkpoints
(:meth:`~Stateful.state_dict`, :meth:`~Stateful.load_state_dict`) and the merge of two
instances (:meth:`~Stateful.merge_state`: ranks that each saw part of the data, or two pieces of
one run) follow from that declaration; an attribute that is not declared is neither saved nor
merged.

Merges are exact (no rule averages): the merged state is the state of one instance that saw
both streams, as far as the rule can know it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def _extreme(pick: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    def merge(a: Any, b: Any) -> Any:  # noqa: ANN401
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return np.maximum(a, b) if pick is max else np.minimum(a, b)
        return pick(a, b)

    return merge


def _own(a: Any, b: Any) -> Any:  # noqa: ANN401
    a.merge(b)
    return a


#: Merge rules by name: ``rule(mine, theirs) -> merged``.
MERGES: dict[str, Callable[[Any, Any], Any]] = {
    # counts and totals
    "sum": lambda a, b: a + b,
    # extremes, elementwise for arrays
    "max": _extreme(max),
    "min": _extreme(min),
    # sequences, mine first (an earlier piece of the run, or a lower rank)
    "cat": lambda a, b: a + b,
    # whatever this instance holds (rank 0's, or the earlier piece's), unless it holds nothing
    "first": lambda a, b: b if a is None else a,
    # sets
    "union": lambda a, b: a | b,
    # the value's own exact merge: Moments (count-weighted, Chan's formula), ActivityTracker
    # (the union of both step sets), quantile sketches, histograms
    "merge": _own,
}


def _plain(value: Any) -> Any:  # noqa: ANN401
    return value


@dataclass(frozen=True)
class StateSpec:
    """One declared state: its default, merge rule, and how it becomes plain and back.

    Attributes:
        default: the value of a fresh instance (copied for each).
        merge: a name of :data:`MERGES`.
        keyed: the state is a dict (site -> value) merged key by key with ``merge``; a key
            only one side holds is taken as it is.
        save: value -> plain Python (bytes, numbers, lists, dicts), for checkpoints.
        load: the inverse of ``save``.
    """

    default: Any
    merge: str
    keyed: bool = False
    save: Callable[[Any], Any] = _plain
    load: Callable[[Any], Any] = _plain

    def fresh(self) -> Any:  # noqa: ANN401
        """A copy of the default."""
        return copy.deepcopy(self.default)

    def to_plain(self, value: Any) -> Any:  # noqa: ANN401
        """The value as :meth:`Stateful.state_dict` holds it."""
        if self.keyed:
            return {key: self.save(v) for key, v in value.items()}
        return self.save(value)

    def from_plain(self, plain: Any) -> Any:  # noqa: ANN401
        """The value :meth:`to_plain` made plain, rebuilt."""
        if self.keyed:
            return {key: self.load(v) for key, v in dict(plain).items()}
        return self.load(plain)

    def combine(self, mine: Any, theirs: Any) -> Any:  # noqa: ANN401
        """`mine` merged with `theirs` (which it may take over: pass a copy)."""
        rule = MERGES[self.merge]
        if not self.keyed:
            return rule(mine, theirs)
        out = dict(mine)
        for key, value in theirs.items():
            out[key] = rule(out[key], value) if key in out else value
        return out


class Stateful:
    """Mixin of lenses and checks: state declared with :meth:`add_state`, saved and merged.

    Example:
        >>> class Counter(Stateful):
        ...     def __init__(self):
        ...         self.add_state("seen", 0, merge="sum")
        ...         self.scratch = []  # not declared: neither saved nor merged
        >>> a, b = Counter(), Counter()
        >>> a.seen, b.seen = 3, 4
        >>> a.state_dict()
        {'seen': 3}
        >>> a.merge_state(b)
        >>> a.seen
        7
    """

    def add_state(
        self,
        name: str,
        default: Any,  # noqa: ANN401
        merge: str,
        *,
        keyed: bool = False,
        save: Callable[[Any], Any] | None = None,
        load: Callable[[Any], Any] | None = None,
    ) -> None:
        """Declare the state `name`: set it to a copy of `default`; say how it merges.

        Args:
            name: the attribute that holds it, and its key in :meth:`state_dict`.
            default: its value on a fresh instance (and after :meth:`reset_state`).
            merge: the rule two instances' values merge by, a name of :data:`MERGES`.
            keyed: it is a dict of values merged key by key (per site).
            save: value -> plain Python, for checkpoints (default: the value itself).
            load: the inverse of ``save``.

        Raises:
            ValueError: an unknown merge rule, or `name` declared twice.
        """
        owner = type(self).__name__
        if merge not in MERGES:
            raise ValueError(
                f"{owner}.add_state({name!r}): unknown merge {merge!r}; choose from "
                f"{', '.join(MERGES)}"
            )
        specs = self._state_specs()
        if name in specs:
            raise ValueError(f"{owner}.add_state: state {name!r} is declared twice")
        specs[name] = StateSpec(default, merge, keyed, save or _plain, load or _plain)
        setattr(self, name, specs[name].fresh())

    def add_children(self, name: str, children: Mapping[str, Stateful]) -> None:
        """Declare parts with state of their own (a lens's checks), saved and merged under `name`.

        Each child's :meth:`state_dict` is kept under its key; loading and merging go to the
        child itself, which stays the same object.
        """
        if name in self._state_specs() or name in self._child_groups():
            raise ValueError(f"{type(self).__name__}.add_children: {name!r} is declared twice")
        self._child_groups()[name] = dict(children)

    def _state_specs(self) -> dict[str, StateSpec]:
        specs = self.__dict__.get("_states")
        if specs is None:
            specs = self.__dict__["_states"] = {}
        return specs

    def _child_groups(self) -> dict[str, dict[str, Stateful]]:
        groups = self.__dict__.get("_children")
        if groups is None:
            groups = self.__dict__["_children"] = {}
        return groups

    def _check_names(self, state: Mapping[str, Any], where: str) -> None:
        names = [*self._state_specs(), *self._child_groups()]
        unknown = [name for name in state if name not in names]
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.{where}: unknown state {unknown[0]!r}; "
                f"it declares {', '.join(names) or 'none'}"
            )

    @property
    def declared_states(self) -> Mapping[str, StateSpec]:
        """The declared states by name, in declaration order."""
        return dict(self._state_specs())

    def state_dict(self) -> dict[str, Any]:
        """Every declared state, as plain Python values (for checkpoints)."""
        out = {
            name: spec.to_plain(getattr(self, name)) for name, spec in self._state_specs().items()
        }
        for name, children in self._child_groups().items():
            out[name] = {key: child.state_dict() for key, child in children.items()}
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a declared state it lacks is reset to its default.

        Raises:
            ValueError: `state` names a state this instance does not declare.
        """
        self._check_names(state, "load_state_dict")
        loaded = {
            name: spec.from_plain(state[name]) if name in state else spec.fresh()
            for name, spec in self._state_specs().items()
        }
        for name, children in self._child_groups().items():
            parts = state.get(name, {})
            for key, child in children.items():
                if key in parts:
                    child.load_state_dict(parts[key])
                else:
                    child.reset_state()
        for name, value in loaded.items():  # rebuilt before any is set: a bad one changes none
            setattr(self, name, value)

    def reset_state(self) -> None:
        """Set every declared state back to its default."""
        for name, spec in self._state_specs().items():
            setattr(self, name, spec.fresh())
        for children in self._child_groups().values():
            for child in children.values():
                child.reset_state()

    def merge_state(self, other: Stateful | Mapping[str, Any]) -> None:
        """Fold in another instance's state (or its :meth:`state_dict`) by the declared rules.

        `other` is left as it was. This becomes the state of one instance that saw both
        streams: the steps or data `other` saw, and those this one saw.

        Raises:
            ValueError: `other` holds a state this instance does not declare.
        """
        state = other.state_dict() if isinstance(other, Stateful) else other
        self._check_names(state, "merge_state")
        specs, groups = self._state_specs(), self._child_groups()
        for name, plain in state.items():
            if name in groups:
                for key, part in plain.items():
                    if key in groups[name]:
                        groups[name][key].merge_state(part)
                continue
            spec = specs[name]
            setattr(self, name, spec.combine(getattr(self, name), spec.from_plain(plain)))
