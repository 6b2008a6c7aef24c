"""ActivityTracker: which units were active in the last window of steps, and which are dead."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerscope import _core
from layerscope.stats._arrays import readable


class ActivityTracker:
    """Per-unit activity over a sliding window of observed steps; finds dead units.

    A unit is an output feature or channel (or a gradient entry). Each call to :meth:`update`
    says which units were active at one step; calling it again with the same step ORs into that
    step (a module called twice per step). Steps may skip numbers — the window counts observed
    steps — but must not go backwards.

    A unit is *dead* once the tracker has observed at least ``window`` steps and the unit was
    inactive in every one of the last ``window`` of them. Before a full window nothing is dead.

    The window is stored as one bitset per step, so :meth:`merge` is exact: the result is the
    tracker that observed the union of both step sets, with the activity of a step seen by
    both ORed (ranks observing the same steps, or pieces of one run). Memory is
    ``window * ceil(units / 64)`` 8-byte words.

    Args:
        units: number of units tracked (> 0).
        window: number of observed steps a unit must stay inactive to count as dead (>= 1).

    Raises:
        ValueError: if ``units < 1`` or ``window < 1``.

    Example:
        >>> import numpy as np
        >>> from layerscope.stats import ActivityTracker
        >>> tracker = ActivityTracker(units=3, window=2)
        >>> tracker.update(0, np.array([5, 0, 0]))
        >>> tracker.dead()  # one step seen: too early to call any unit dead
        array([False, False, False])
        >>> tracker.update(1, np.array([True, False, True]))
        >>> tracker.dead()
        array([False,  True, False])
        >>> tracker.active_steps().tolist(), tracker.last_active().tolist()
        ([2, 0, 1], [1, -1, 1])
        >>> tracker
        ActivityTracker(units=3, window=2, steps_observed=2, dead=1)

    """

    __slots__ = ("_core",)

    def __init__(self, units: int, window: int = 100) -> None:
        self._core = _core.ActivityTracker(_as_int(units, "units"), _as_int(window, "window"))

    @property
    def units(self) -> int:
        """Return the number of units tracked."""
        return int(self._core.units)

    @property
    def window(self) -> int:
        """Return the number of observed steps in the window."""
        return int(self._core.window)

    def update(self, step: int, active: Any) -> None:
        """Record which units were active at ``step``.

        Args:
            step: the training step (>= 0, not older than the newest step seen; the newest step
                again ORs into it).
            active: per-unit counts or flags (nonzero means active) as a 1-d numpy array, CPU
                torch tensor or sequence of length ``units``, of an integer or bool dtype; or a
                summary-like object with a ``channel_active`` attribute holding such an array.

        Raises:
            TypeError: for a float or other non-integer dtype, or a tensor off the CPU.
            ValueError: for a wrong length or shape, a negative step or a step going backwards.

        """
        if not isinstance(active, np.ndarray):  # a numpy array, the common case, goes as it is
            channel_active = getattr(active, "channel_active", None)
            if channel_active is not None:
                active = channel_active
            active = readable(active, "ActivityTracker.update")
        self._core.update(step if type(step) is int else _as_int(step, "step"), active)

    def merge(self, other: ActivityTracker) -> None:
        """Fold ``other`` in: this becomes the tracker that observed both step sets.

        Activity of a step both observed is ORed. The window, :meth:`active_steps`,
        :meth:`last_active` and :meth:`dead` are exact for any two step sets;
        :meth:`steps_observed` is exact unless both histories interleave and outgrew the window,
        where it is a lower bound.

        Raises:
            TypeError: if ``other`` is not an ActivityTracker.
            ValueError: if ``units`` or ``window`` differ.

        """
        if not isinstance(other, ActivityTracker):
            raise TypeError(
                f"ActivityTracker.merge: expected an ActivityTracker, got {type(other).__name__}"
            )
        self._core.merge(other._core)

    def steps_observed(self) -> int:
        """Return the number of distinct steps observed (see :meth:`merge` after a merge)."""
        return int(self._core.steps_observed())

    def last_step(self) -> int:
        """Return the newest observed step, or -1 before the first update."""
        return int(self._core.last_step())

    def last_active(self) -> np.ndarray:
        """Return, per unit, the last step it was active (not only in the window); -1 if never."""
        return self._core.last_active()

    def active_steps(self) -> np.ndarray:
        """Return, per unit, in how many of the last ``window`` observed steps it was active."""
        return self._core.active_steps()

    def dead(self) -> np.ndarray:
        """Return, per unit, whether it is dead; all False before ``window`` observed steps."""
        return self._core.dead()

    def dead_count(self) -> int:
        """Return the number of dead units (0 before a full window)."""
        return int(self._core.dead_count())

    def dead_fraction(self) -> float:
        """Return the dead units as a fraction of ``units``, in [0, 1]."""
        return float(self._core.dead_fraction())

    def serialize(self) -> bytes:
        """Return versioned bytes that :meth:`deserialize` reads back."""
        return self._core.serialize()

    @classmethod
    def deserialize(cls, data: bytes) -> ActivityTracker:
        """Rebuild a tracker from :meth:`serialize`'s bytes.

        Raises:
            ValueError: for truncated, corrupted or foreign bytes.

        """
        tracker = cls.__new__(cls)
        tracker._core = _core.ActivityTracker.deserialize(bytes(data))
        return tracker

    def __repr__(self) -> str:
        return (
            f"ActivityTracker(units={self.units}, window={self.window}, "
            f"steps_observed={self.steps_observed()}, dead={self.dead_count()})"
        )


def _as_int(value: Any, name: str) -> int:
    """``value`` as a Python int (numpy integers too); bools and floats are refused."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"ActivityTracker: {name} must be an integer, got {value!r}")
    return int(value.__index__())
