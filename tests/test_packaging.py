"""Packaging: the conda recipe and CI files agree with pyproject.toml; sdist and wheel install
into a fresh virtual environment and work there."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_NAMES = {"torch": "pytorch"}  # conda-forge's names where they differ from PyPI's


def _recipe() -> dict:
    text = (ROOT / "recipe" / "meta.yaml").read_text()
    variables = dict(re.findall(r'{%\s*set\s+(\w+)\s*=\s*"([^"]*)"\s*%}', text))
    text = re.sub(r"{%.*?%}", "", text)
    text = re.sub(r"{{\s*(\w+)\s*}}", lambda m: variables.get(m.group(1), m.group(1)), text)
    text = re.sub(r"{{.*?}}", "x", text)
    return yaml.safe_load(text)


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def test_conda_recipe_matches_pyproject():
    recipe, project = _recipe(), PYPROJECT["project"]
    assert recipe["package"]["name"] == project["name"]
    assert recipe["package"]["version"] == project["version"]
    run = dict(_split(r) for r in recipe["requirements"]["run"])
    assert run.pop("python") == project["requires-python"]
    wanted = dict(_split(r) for r in project["dependencies"])
    assert run == {CONDA_NAMES.get(k, k): v for k, v in wanted.items()}
    scripts = [f"{k} = {v}" for k, v in project["scripts"].items()]
    assert recipe["build"]["entry_points"] == scripts
    assert recipe["about"]["license"] == project["license"] == "Apache-2.0"
    assert (ROOT / "recipe" / ".." / recipe["about"]["license_file"]).is_file()
    host = dict(_split(r) for r in recipe["requirements"]["host"])
    for requirement in PYPROJECT["build-system"]["requires"]:
        name, spec = _split(requirement)
        assert host[name] == spec


def test_extras_and_cibuildwheel_configuration():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"integrations", "docs"} <= set(extras)
    assert any("integrations" in r and "docs" in r for r in extras["dev"])
    cibw = PYPROJECT["tool"]["cibuildwheel"]
    assert "pp*" in cibw["skip"]
    assert cibw["test-command"]
    assert "torch==2.13.0" in cibw["linux"]["test-requires"]


@pytest.mark.parametrize("name", ["tests.yml", "wheels.yml", "docs.yml"])
def test_workflows_are_valid(name):
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    assert workflow["jobs"]
    for job in workflow["jobs"].values():
        assert job["runs-on"]
        assert all("uses" in step or "run" in step for step in job["steps"])


def _run(*args: str | Path, **kwargs) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_sdist_and_wheel_install_into_a_fresh_venv(tmp_path):
    pytest.importorskip("build")
    pytest.importorskip("scikit_build_core")
    dist = tmp_path / "dist"
    # sdist first, then the wheel built from the unpacked sdist: both are checked at once.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    sdist, wheel = next(dist.glob("*.tar.gz")), next(dist.glob("*.whl"))
    assert sdist.name == "layerscope-0.1.0.tar.gz"
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence
    with tarfile.open(sdist) as archive:
        member = archive.extractfile("layerscope-0.1.0/LICENSE")
        assert member.read().decode() == licence
        info = archive.extractfile("layerscope-0.1.0/PKG-INFO").read().decode()
    assert "License-Expression: Apache-2.0" in info
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("layerscope-0.1.0.dist-info/licenses/LICENSE").decode() == licence
        assert (
            "License-File: LICENSE" in archive.read("layerscope-0.1.0.dist-info/METADATA").decode()
        )

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    # the wheel first, before the borrowed paths could make pip think it is installed already
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel)
    # torch and numpy come from this environment, appended after the fresh venv's own packages
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    import numpy
    import torch

    borrowed = dict.fromkeys(str(Path(m.__file__).parents[1]) for m in (torch, numpy))
    (Path(site) / "borrowed.pth").write_text("".join(f"{p}\n" for p in borrowed))
    smoke = (
        "import layerscope, numpy as np, torch\n"
        f"assert layerscope.__file__.startswith({site!r}), layerscope.__file__\n"
        "x = np.arange(10.0)\n"
        "assert layerscope.stats.summarize(x).mean == 4.5\n"
        "m = torch.nn.Linear(3, 2); opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "with layerscope.watch(m, optimizer=opt) as scope:\n"
        "    for _ in range(2):\n"
        "        m(torch.randn(4, 3)).sum().backward(); opt.step(); opt.zero_grad()\n"
        "print(sorted({r.step for r in scope.records()}))\n"
    )
    assert _run(python, "-c", smoke, cwd=tmp_path).strip() == "[0, 1]"
    assert "layerscope" in _run(python, "-m", "layerscope", "--version", cwd=tmp_path)
