"""Drift: modules and parameters of a watched model that changed after ``watch()``.

The hooks hang on the objects ``watch()`` saw: a module replaced, added or removed, or a
parameter object swapped (``model.to()`` under ``torch.__future__``'s overwrite/swap settings)
is silently unobserved unless someone looks. The scope looks at each flush.
"""

from __future__ import annotations

from torch import nn


def own_parameters(modules: dict[str, nn.Module]) -> list[nn.Parameter]:
    """Every module's direct parameters, in module order."""
    return [p for m in modules.values() for p in m._parameters.values() if p is not None]


def changes_since_watch(
    model: nn.Module, modules: dict[str, nn.Module], params: list[nn.Parameter]
) -> str | None:
    """What changed in `model` since `modules` and `params` were taken; None if nothing."""
    now = dict(model.named_modules())
    now_params = own_parameters(now)
    if (
        now.keys() == modules.keys()
        and all(now[name] is module for name, module in modules.items())
        and len(now_params) == len(params)
        and all(a is b for a, b in zip(now_params, params, strict=True))
    ):
        return None
    replaced = [n for n, m in modules.items() if n in now and now[n] is not m]
    added = [n for n in now if n not in modules]
    removed = [n for n in modules if n not in now]
    known = {id(p) for p in params}
    new_params = sum(id(p) not in known for p in now_params)
    return (
        f"replaced: {replaced[:5]}, added: {added[:5]}, removed: {removed[:5]}, "
        f"new parameter objects: {new_params}"
    )
