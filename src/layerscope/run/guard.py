"""Containment: a failure inside layerscope warns once, stops that part, and training goes on.

Every part of a run shares one :class:`Guard`: its notes say what was already said (each
failure, skipped site or lost pass is said once), and its flags say whether the run was closed
or its step pipeline broke.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from layerscope.lenses import Lens
from layerscope.records import Record


class Guard:
    """The run's notes and its closed / broken state, shared by every part.

    Attributes:
        notes: what was already said once (a part, a site, a lens).
        closed: the scope was closed.
        broken: a part of the step pipeline failed: observation has stopped for the run.
        stop: called once when the pipeline breaks, to stop observing (set by the scope).
    """

    def __init__(self) -> None:
        self.notes: set[str] = set()
        self.closed = False
        self.broken = False
        self.stop: Callable[[], None] = lambda: None

    def first(self, note: str) -> bool:
        """Whether `note` is new (and remember it): say something once."""
        if note in self.notes:
            return False
        self.notes.add(note)
        return True

    def warn_once(self, part: str, error: Exception, consequence: str) -> None:
        """Say once, loudly, that `part` of layerscope failed and what it costs the run."""
        if self.first(part):
            warnings.warn(
                f"layerscope: {part} failed ({error!r}); {consequence}; training goes on",
                RuntimeWarning,
                stacklevel=3,
            )

    def site_failed(self, site: str, error: Exception) -> None:
        """Say once that `site` could not be reduced (the gate then observes it no more)."""
        if self.first(site):
            warnings.warn(
                f"layerscope: could not reduce site {site} ({error!r}); it is skipped from now on",
                RuntimeWarning,
                stacklevel=4,
            )

    def contained(self, part: str, call: Any, *args: Any) -> bool:  # noqa: ANN401
        """Run a part of the step pipeline; if it raises, observation stops for the run.

        Records emitted before still reach the sinks and ``records()``.
        """
        try:
            call(*args)
        except Exception as error:  # noqa: BLE001 - layerscope must never kill training
            self.broken = True
            self.warn_once(part, error, "layerscope stops observing this run")
            self.stop()
            return False
        return True

    def lens_call(self, lens: Lens, method: Any, *args: Any) -> list[Record]:  # noqa: ANN401
        """Call a lens method; a failing lens warns once and the run goes on."""
        try:
            return method(*args)
        except Exception as error:  # noqa: BLE001 - a lens must never kill training
            if self.first(repr(lens)):
                warnings.warn(
                    f"layerscope: lens {lens!r} failed: {error!r}", RuntimeWarning, stacklevel=3
                )
            return []
