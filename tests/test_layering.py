"""The plan of the house: each stage of the pipeline imports only the stages below it.

    base (engine, records, vocabulary) < gatherers < reduce < lenses < health < sinks
        < composition (Scope and its parts, the default lenses) < frontends

Every import in every module counts, including those inside functions (a late import is still
a dependency). The test reads the source with ``ast``, so it checks the tree as it is, not
whatever happened to be imported first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import layerscope

PACKAGE = Path(layerscope.__file__).parent

#: Stage of each top-level module or package of ``layerscope``; higher may import lower.
STAGES: dict[str, int] = {
    # base: the engine and the words every stage shares
    "_core": 0,
    "stats": 0,
    "records": 0,
    "record_columns": 0,
    "vocabulary": 0,
    "observation": 0,
    "units": 0,
    "docs": 0,
    # the pipeline
    "gatherers": 1,
    "reduce": 2,
    "lenses": 3,
    "health": 4,
    "sinks": 5,
    # composition: the Scope and what it is built from
    "presets": 6,
    "run": 6,
    "scope": 6,
    "passes": 6,
    "drift": 6,
    "checkpoint": 6,
    "distributed": 6,
    "history": 6,
    # frontends
    "integrations": 7,
    "demo": 7,
    "cli": 7,
    "info": 7,
    "__init__": 7,
    "__main__": 7,
}
NAMES = {rank: [name for name, r in STAGES.items() if r == rank] for rank in set(STAGES.values())}


def _stage_of(module: str) -> str:
    """``layerscope.lenses.base`` -> ``lenses``; ``layerscope`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported layerscope module) of every import in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("layerscope")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "layerscope":  # ``from layerscope import stats, __version__``
                found += [(node.lineno, _module_or_root(a.name)) for a in node.names]
            elif target.startswith("layerscope."):
                found.append((node.lineno, target))
    return found


def _module_or_root(name: str) -> str:
    """``layerscope.<name>`` for a submodule, ``layerscope`` for a name the package defines."""
    is_module = (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()
    is_module = is_module or any(PACKAGE.glob(f"{name}.*.so")) or any(PACKAGE.glob(f"{name}.*.pyd"))
    return f"layerscope.{name}" if is_module else "layerscope"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__" and len(parts) > 1 and parts[-2] != "layerscope":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_every_module_belongs_to_a_stage() -> None:
    unknown = {_stage_of(name) for name, _ in _modules()} - set(STAGES)
    assert not unknown, f"add {sorted(unknown)} to STAGES in tests/test_layering.py"


@pytest.mark.parametrize("module", [name for name, _ in _modules()])
def test_imports_point_down_the_pipeline(module: str) -> None:
    path = dict(_modules())[module]
    own = _stage_of(module)
    upward = [
        f"line {line}: {module} ({own}, stage {STAGES[own]}) imports {target} "
        f"({_stage_of(target)}, stage {STAGES.get(_stage_of(target), '?')})"
        for line, target in _imports(path, module)
        if STAGES.get(_stage_of(target), 99) > STAGES[own]
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_a_late_upward_import(tmp_path: Path) -> None:
    """The rule also holds for imports inside functions, the usual way round a cycle."""
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from layerscope.health import CHECKS\n    return CHECKS\n")
    assert _imports(source, "layerscope.lenses.late") == [(2, "layerscope.health")]
