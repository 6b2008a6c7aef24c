"""``layerscope info``, ``python -m layerscope --version`` and the docs links of error messages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

import layerscope
from layerscope import _core
from layerscope.cli import main
from layerscope.docs import ERROR_TOPICS, error_url
from layerscope.info import EXTRAS, collect


def test_python_m_layerscope_version():
    done = subprocess.run(
        [sys.executable, "-m", "layerscope", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"layerscope {layerscope.__version__}"


def test_build_info_describes_the_engine():
    info = _core.build_info()
    assert info["cxx_standard"] >= 201703
    assert isinstance(info["ndebug"], bool)
    assert info["compiler"]
    if not info["simd_avx2_compiled"]:
        assert not info["simd_avx2_runtime"]


def test_info_prints_versions_build_flags_and_extras(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert np.__version__ in out
    assert f"cxx_standard         {_core.build_info()['cxx_standard']}" in out
    extras = collect()["extras"]
    for name, modules in EXTRAS.items():
        assert extras[name] == all(importlib.util.find_spec(m) is not None for m in modules)
        assert f"{name:<20} {'yes' if extras[name] else 'no'}" in out


def test_errors_point_to_their_docs_section():
    with pytest.raises(ValueError, match="every must be a positive integer") as caught:
        layerscope.watch(torch.nn.Linear(2, 2), every=0)
    assert error_url("bad-option") in str(caught.value)
    with pytest.raises(ValueError, match="unknown topic"):
        error_url("nonsense")


def test_every_error_topic_has_a_section_on_the_errors_page():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "errors.rst").read_text()
    for topic in ERROR_TOPICS:
        assert f".. _{topic}:" in page
