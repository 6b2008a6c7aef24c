"""Every example in the public docstrings runs and shows what it says (they feed the docs)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import layerscope

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(layerscope.__path__, "layerscope.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as missing:  # a module of an optional extra that is not installed
        pytest.skip(f"{name}: {missing}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
