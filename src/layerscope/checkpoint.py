"""A Scope's checkpoint: what it holds, and the checks a state passes before it is loaded.

A state names the model's modules and the lenses it was saved with, so that loading it into a
scope of another model, or of other lenses or another lens order, is refused with a message
that names the difference instead of silently continuing curves that belong elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The version :func:`scope_state` writes; version 1 states (no module or lens names) still load.
VERSION = 2
_WHERE = "Scope.load_state_dict"


def scope_state(
    step: int, epoch: int, modules: Sequence[str], lenses: Sequence[Any]
) -> dict[str, Any]:
    """The checkpoint of a scope: plain Python values only (``torch.load(weights_only=True)``)."""
    return {
        "version": VERSION,
        "step": step,
        "epoch": epoch,
        "modules": list(modules),
        "lenses": [{"lens": repr(lens), "state": lens.state_dict()} for lens in lenses],
    }


def lens_states(
    state: object, modules: Sequence[str], lenses: Sequence[Any]
) -> tuple[int, int, list[dict[str, Any]]]:
    """Check `state` against this scope's modules and lenses; its step, epoch and lens states.

    Raises:
        ValueError: `state` is not a scope state, or was saved from another model or with
            other lenses (the message names the difference).
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"{_WHERE}: expected the dict Scope.state_dict() returns, got {state!r}")
    version = state.get("version")
    if version not in (1, VERSION):
        raise ValueError(f"{_WHERE}: unknown state version {version!r}; this layerscope reads 1-2")
    for key in ("step", "epoch", "lenses"):
        if key not in state:
            raise ValueError(f"{_WHERE}: the state has no {key!r}; is it a Scope.state_dict()?")
    step, epoch, saved = state["step"], state["epoch"], state["lenses"]
    for key, value in (("step", step), ("epoch", epoch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"{_WHERE}: the state's {key} must be a non-negative int, got {value!r}"
            )
    if not isinstance(saved, Sequence) or isinstance(saved, str):
        raise ValueError(f"{_WHERE}: the state's lenses must be a list, got {saved!r}")
    if len(saved) != len(lenses):
        raise ValueError(
            f"{_WHERE}: the state holds {len(saved)} lenses, this scope has {len(lenses)}; "
            "attach the same lenses as the saved run"
        )
    if version == 1:
        return step, epoch, [_checked_dict(s, i) for i, s in enumerate(saved)]
    _check_modules(state.get("modules"), modules)
    out = []
    for i, (entry, lens) in enumerate(zip(saved, lenses, strict=True)):
        entry = _checked_dict(entry, i)
        if entry.get("lens") != repr(lens):
            raise ValueError(
                f"{_WHERE}: lens {i} of the state is {entry.get('lens')}, this scope's is "
                f"{lens!r}; attach the same lenses, in the same order, as the saved run"
            )
        out.append(_checked_dict(entry.get("state"), i))
    return step, epoch, out


def _checked_dict(value: object, index: int) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{_WHERE}: the state of lens {index} must be a dict, got {value!r}")
    return dict(value)


def _check_modules(saved: object, modules: Sequence[str]) -> None:
    if not isinstance(saved, Sequence) or isinstance(saved, str):
        raise ValueError(f"{_WHERE}: the state's modules must be a list of names, got {saved!r}")
    if list(saved) == list(modules):
        return
    missing = [m for m in saved if m not in set(modules)]
    extra = [m for m in modules if m not in set(saved)]
    raise ValueError(
        f"{_WHERE}: the state was saved from another model: modules only in the state "
        f"{missing[:5]}, only in this model {extra[:5]}"
        + ("" if missing or extra else " (the same names in another order)")
    )
