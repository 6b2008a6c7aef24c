"""Imports of the optional extras, with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the layerscope extra that provides it.

    Args:
        module: the module to import, such as ``"matplotlib.figure"``.
        extra: the extra of layerscope that installs it, such as ``"plot"``.
        what: the feature that needs it, named in the error.

    Returns:
        The imported module.

    Raises:
        ImportError: when the module is not installed.

    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"layerscope: {what} needs {module.split('.')[0]}, which is not installed; "
            f"install it with: pip install layerscope[{extra}]"
        ) from error
