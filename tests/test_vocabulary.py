"""The vocabulary: lenses export the keys they write, checks and sinks find records by them.

Checks and sinks read other stages' records only through the keys the lenses export (no
``r.quantity == "dead"`` across stages), every key they read is one a lens writes, and findings
read the same everywhere from one severity table and one formatter.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import layerscope
from layerscope import lenses
from layerscope.health import CHECKS, Finding
from layerscope.lenses import ALL_STATISTICS
from layerscope.lenses.base import Lens
from layerscope.lenses.optimizer import STATE_KEYS
from layerscope.records import Record
from layerscope.sinks.console import DEFAULT_COLUMNS, LOG_LEVELS
from layerscope.vocabulary import (
    FINDING_LAYOUTS,
    SEVERITY_LEVELS,
    Key,
    finding_text,
    severity_name,
)

PACKAGE = Path(layerscope.__file__).parent
#: The stages above the lenses: they read records the lenses write.
READERS = ("health", "sinks", "history.py", "demo.py", "drift.py", "presets.py")
FIELDS = {"quantity", "statistic"}
STATISTIC_NAMES = frozenset(ALL_STATISTICS) - {"histogram"}


def _exported_keys() -> set[Key]:
    """Every Key a built-in lens class exports."""
    out: set[Key] = set(STATE_KEYS.values())
    classes = [c for c in vars(lenses).values() if isinstance(c, type) and issubclass(c, Lens)]
    for lens in classes:
        for base in lens.__mro__:
            for value in vars(base).values():
                if isinstance(value, Key):
                    out.add(value)
                elif isinstance(value, tuple) and all(isinstance(v, Key) for v in value):
                    out.update(value)
            out.update(
                v for base in lens.__mro__ for v in vars(base).values() if isinstance(v, Key)
            )
    return out


def test_every_key_a_check_reads_is_one_a_lens_writes():
    exported = _exported_keys()
    for name, check in CHECKS.items():
        assert check.reads is not None, name
        assert check.reads <= exported, (name, check.reads - exported)


def test_every_default_console_column_reads_a_key_a_lens_writes():
    exported = _exported_keys()
    for column in DEFAULT_COLUMNS:
        keys = {Key(q, s) for q in column.quantities for s in column.statistics}
        assert keys <= exported, column.title


def test_the_exported_keys_are_the_records_a_run_writes():
    """The keys name what the lenses really record: a short real run has each one it can."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    chosen = [
        lenses.Loss(),
        lenses.GradientNorms(),
        lenses.DeadUnits(window=2),
        lenses.Optimizer(),
    ]
    with layerscope.watch(model, optimizer=opt, lenses=chosen) as scope:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(5, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    written = {Key(r.quantity, r.statistic) for r in scope.records()}
    for key in (
        lenses.Loss.LOSS,
        lenses.GradientNorms.L2,
        lenses.GradientNorms.GLOBAL_L2,
        lenses.GradientNorms.SHARE,
        lenses.DeadUnits.ACTIVE_FRACTION,
        lenses.DeadUnits.DEAD_FRACTION,
        lenses.DeadUnits.DEAD_COUNT,
        lenses.Optimizer.UPDATE,
        lenses.Optimizer.UPDATE_RATIO,
        lenses.Optimizer.EPS_DOMINANCE,
        lenses.Optimizer.EXP_AVG_SQ,
        lenses.Optimizer.LR,
    ):
        assert key in written, key
    assert lenses.Attention.ENTROPY in lenses.Attention.HEAD_KEYS
    assert lenses.Attention.ENTROPY_RATIO in lenses.Attention.HEAD_KEYS


def _bare_string_reads(path: Path) -> list[str]:
    """Comparisons of a record's quantity or statistic with a string literal, and finds by one.

    The statistics a user names (``statistics=("mean", "std")``, :data:`ALL_STATISTICS`) are
    words of the public API that every lens shares; a statistic may be compared with those.
    """

    def is_field(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr in FIELDS) or (
            isinstance(node, ast.Name) and node.id in FIELDS
        )

    def is_literal(node: ast.AST, public: frozenset[str] = frozenset()) -> bool:
        if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
            return any(is_literal(e, public) for e in node.elts)
        return (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (node.value not in public)
        )

    def is_statistic(node: ast.AST) -> bool:
        return getattr(node, "attr", getattr(node, "id", None)) == "statistic"

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            public = STATISTIC_NAMES if any(is_statistic(s) for s in sides) else frozenset()
            if any(is_field(s) for s in sides) and any(is_literal(s, public) for s in sides):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "find"
            and any(is_literal(a) for a in node.args)
        ):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("reader", READERS)
def test_no_stage_finds_another_stages_records_by_bare_strings(reader):
    root = PACKAGE / reader
    paths = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    found = [hit for path in paths for hit in _bare_string_reads(path)]
    assert not found, "import the key the lens exports instead:\n" + "\n".join(found)


def test_the_checker_sees_a_bare_string_read(tmp_path):
    source = tmp_path / "reader.py"
    source.write_text(
        "def f(r, view, quantity):\n"
        "    a = r.quantity == 'dead'\n"
        "    b = quantity in ('last', 'value') or r.statistic == 'std'\n"
        "    return view.find('l2', 'last'), a, b\n"
    )
    assert len(_bare_string_reads(source)) == 3


def test_one_severity_table():
    assert [severity_name(level) for level in (1, 2, 3)] == list(SEVERITY_LEVELS)
    assert LOG_LEVELS == {1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
    f = Finding("dead_units", "warning", 3, ("fc1:output",))
    assert severity_name(float(f.level)) == "warning"
    assert severity_name(2.5) == severity_name(None) == "finding"


def test_one_formatter_reads_every_finding_the_same_way():
    r = Record(7, 0, "health", "fc1:output", "finding", "dead_units", 3.0, text="a < b's")
    lines = {layout: finding_text(r, layout) for layout in FINDING_LAYOUTS}
    assert lines["line"] == "error, step 7, fc1:output: a < b's"
    assert lines["console"] == "error: step 7: fc1:output: dead_units: a < b's"
    assert lines["markdown"] == "**error**, step 7, `fc1:output` (dead_units): a < b's"
    assert lines["html"] == (
        '<span class="severity">error</span> step 7, <code>fc1:output</code> (dead_units): '
        "a &lt; b's"
    )
    whole = r._replace(site="")
    assert finding_text(whole, "markdown").startswith("**error**, step 7, the model (")
    with pytest.raises(ValueError, match="unknown layout 'rst'.*line, console, markdown, html"):
        finding_text(r, "rst")
