"""The C++ engine as an installed CMake package: install, find_package, build and run the examples.

The plain example's printed statistics are checked against numpy; the LibTorch example (built
only where torch ships its CMake config) against the gradient norms torch prints beside them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")


def _run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cpp")
    prefix, build, ex = tmp / "prefix", tmp / "build", tmp / "examples"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(
        "cmake",
        "-S",
        ROOT,
        "-B",
        build,
        *generator,
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_INSTALL_PREFIX={prefix}",
    )
    _run("cmake", "--install", build)
    assert (prefix / "include" / "layerscope" / "summary.hpp").is_file()
    # The engine holds statistics only: the extensions (TensorBoard's CRC, the Adam step
    # kernel) stay out of the installed package.
    headers = {p.name for p in (prefix / "include").rglob("*.hpp")}
    assert not headers & {"crc32c.hpp", "optimizer_step.hpp"}
    config = next(prefix.glob("lib*/cmake/layerscope/layerscopeConfig.cmake"))
    assert (config.parent / "layerscopeConfigVersion.cmake").is_file()
    paths = [str(prefix)]
    try:
        import torch

        paths.append(torch.utils.cmake_prefix_path)
    except ImportError:
        pass
    _run(
        "cmake",
        "-S",
        ROOT / "examples" / "cpp",
        "-B",
        ex,
        *generator,
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={';'.join(paths)}",
    )
    _run("cmake", "--build", ex, "-j", str(os.cpu_count() or 2))
    return ex


def _exe(folder: Path, name: str) -> Path:
    return folder / (name + (".exe" if sys.platform == "win32" else ""))


def test_plain_example_agrees_with_numpy(examples, tmp_path):
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    x[::97] = 0.0
    path = tmp_path / "values.f32"
    x.tofile(path)
    out = dict(re.findall(r"^(\S+) = (\S+)$", _run(_exe(examples, "summarize"), path), re.M))
    d = x.astype(np.float64)
    assert int(out["size"]) == x.size
    assert int(out["zeros"]) == int((x == 0).sum())
    # float32 input is summed in float lanes flushed to double (summary.hpp): ~1e-7 relative
    # to the sum of magnitudes
    assert float(out["mean"]) == pytest.approx(d.mean(), abs=1e-6 * np.abs(d).mean())
    assert float(out["min"]) == d.min()
    assert float(out["max"]) == d.max()
    assert float(out["l1"]) == pytest.approx(np.abs(d).sum(), rel=1e-6)
    assert float(out["l2"]) == pytest.approx(np.sqrt((d * d).sum()), rel=1e-6)
    assert int(out["moments.count"]) == x.size
    assert float(out["moments.variance"]) == pytest.approx(d.var(), rel=1e-10)
    for level in (10, 50, 90):  # k = 200: normalized rank error under 1.3 %
        rank = (d <= float(out[f"sketch.q{level}"])).mean()
        assert abs(rank - level / 100) < 0.013


def test_libtorch_example_feeds_gradients_to_the_engine(examples):
    exe = _exe(examples, "train_libtorch")
    if not exe.exists():
        pytest.skip("LibTorch not found: train_libtorch was not built")
    lines = re.findall(r"grad l2 = (\S+)\s+\(torch: (\S+)\)", _run(exe))
    assert len(lines) == 16  # 4 parameters at steps 0, 5, 10, 15
    for mine, theirs in lines:
        assert float(mine) == pytest.approx(float(theirs), rel=1e-5, abs=1e-6)
