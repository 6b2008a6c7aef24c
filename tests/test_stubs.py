"""The committed type stubs of layerscope._core are what nanobind's stub generator writes now.

After changing a binding, regenerate them with
``python -m nanobind.stubgen -m layerscope._core -o src/layerscope/_core.pyi``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

COMMITTED = Path(__file__).resolve().parents[1] / "src" / "layerscope" / "_core.pyi"


@pytest.mark.skipif(
    importlib.util.find_spec("nanobind") is None
    or importlib.util.find_spec("nanobind.stubgen") is None,
    reason="nanobind.stubgen is not installed (pip install layerscope[dev])",
)
def test_committed_stub_equals_a_fresh_one(tmp_path):
    fresh = tmp_path / "_core.pyi"
    command = [sys.executable, "-m", "nanobind.stubgen", "-q", "-m", "layerscope._core"]
    subprocess.run([*command, "-o", str(fresh)], check=True, capture_output=True)
    assert COMMITTED.read_text() == fresh.read_text(), (
        "src/layerscope/_core.pyi is stale; regenerate it with "
        "python -m nanobind.stubgen -m layerscope._core -o src/layerscope/_core.pyi"
    )


def test_stub_and_marker_sit_in_the_package():
    assert COMMITTED.is_file()
    assert (COMMITTED.parent / "py.typed").is_file()
