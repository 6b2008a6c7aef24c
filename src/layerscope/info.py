"""``layerscope info``: versions, the engine's build flags and which optional extras import."""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

#: Optional extras and the modules each needs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "plot": ("matplotlib",),
    "pandas": ("pandas", "pyarrow"),
    "console": ("rich",),
    "integrations": ("lightning", "transformers", "accelerate"),
    "docs": ("sphinx",),
}


def _importable(module: str) -> bool:
    """Whether ``module`` is installed (found without importing it: lightning takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def collect() -> dict[str, Any]:
    """Versions of layerscope, Python, torch and numpy, the engine's build info and the extras.

    Example:
        >>> info = collect()
        >>> sorted(info)[:3]
        ['build', 'extras', 'layerscope']

    """
    import numpy
    import torch

    from layerscope import __version__, _core

    extras = {name: all(_importable(m) for m in modules) for name, modules in EXTRAS.items()}
    return {
        "layerscope": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "build": dict(_core.build_info()),
        "extras": extras,
    }


def format_info(info: dict[str, Any]) -> str:
    """Format `info` as the text ``layerscope info`` prints."""
    lines = [f"{key:<12} {info[key]}" for key in ("layerscope", "python", "torch", "numpy")]
    lines.append("engine")
    lines += [f"  {key:<20} {value}" for key, value in info["build"].items()]
    lines.append("extras")
    lines += [f"  {name:<20} {'yes' if ok else 'no'}" for name, ok in info["extras"].items()]
    return "\n".join(lines)
