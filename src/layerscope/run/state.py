"""Checkpoint glue: a saved scope state back into a run's lenses, all or nothing.

:mod:`layerscope.checkpoint` defines the saved form and checks it; this loads it into the
lenses so that a lens refusing its state leaves every lens as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layerscope.checkpoint import lens_states
from layerscope.lenses import Lens


def load(state: dict[str, Any], modules: list[str], lenses: Sequence[Lens]) -> tuple[int, int]:
    """Load `state`'s lens states into `lenses`; return its (step, epoch).

    Raises:
        ValueError: the state is not a scope's, or was saved from another model or with
            other lenses, or a lens refuses its state; every lens is then left as it was.
    """
    step, epoch, saved = lens_states(state, modules, list(lenses))
    previous = [lens.state_dict() for lens in lenses]
    for i, (lens, lens_state) in enumerate(zip(lenses, saved, strict=True)):
        try:
            lens.load_state_dict(lens_state)
        except Exception as error:
            for earlier, before in zip(lenses[: i + 1], previous, strict=False):
                earlier.load_state_dict(before)
            raise ValueError(
                f"Scope.load_state_dict: the state of lens {i} ({lens!r}) does not load: {error!r}"
            ) from error
    return step, epoch
