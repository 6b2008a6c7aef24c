"""The Scope's counters are its own: read-only to callers, moved only through its methods.

Trainer integrations set the epoch and end a failed run through public calls
(``align_epoch``, ``close(failed=True)``), never by writing the scope's attributes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.records import select
from models import batches, mlp, steps

INTEGRATIONS = Path(layerscope.__file__).parent / "integrations"


def test_records_carry_the_epoch_set_by_epoch_and_align_epoch():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    data = batches("mlp", 6)
    with layerscope.watch(model, optimizer=opt, lenses=[lenses.Loss()]) as scope:
        steps(model, opt, scope, data[:2])
        scope.epoch()
        steps(model, opt, scope, data[2:4])
        scope.align_epoch(7)  # a trainer's own epoch counter
        assert scope.epoch_count == 7
        steps(model, opt, scope, data[4:])
    epochs = {r.step: r.epoch for r in select(scope.records(), tag="loss")}
    assert epochs == {0: 0, 1: 0, 2: 1, 3: 1, 4: 7, 5: 7}


@pytest.mark.parametrize("counter", ["step_count", "epoch_count"])
def test_the_counters_are_read_only(counter):
    model = mlp()
    with layerscope.watch(model, lenses=[lenses.Loss()]) as scope:
        with pytest.raises(AttributeError):
            setattr(scope, counter, 3)
        assert getattr(scope, counter) == 0


@pytest.mark.parametrize("epoch", [-1, 1.5, "2"])
def test_align_epoch_rejects_what_is_not_an_epoch(epoch):
    with layerscope.watch(mlp(), lenses=[lenses.Loss()]) as scope:
        with pytest.raises(ValueError, match="Scope.align_epoch: epoch must be a non-negative"):
            scope.align_epoch(epoch)


def test_close_failed_keeps_closed_steps_and_drops_the_one_in_progress():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    data = batches("mlp", 3)
    scope = layerscope.watch(model, optimizer=opt, lenses=[lenses.Loss()], flush_every=100)
    steps(model, opt, scope, data[:2])
    x, y = data[2]
    scope.observe_loss(nn.functional.cross_entropy(model(x), y))  # a step that never closes
    scope.close(failed=True)
    assert sorted(r.step for r in select(scope.records(), tag="loss")) == [0, 1]
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


def _scope_touches(tree: ast.AST) -> list[str]:
    """``x.scope.attr = ...`` / ``scope.attr = ...`` writes and ``scope._private`` reads."""
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and _is_scope(target.value):
                found.append(f"line {node.lineno}: writes scope.{target.attr}")
        if (
            isinstance(node, ast.Attribute)
            and _is_scope(node.value)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: reads scope.{node.attr}")
    return found


def _is_scope(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "scope") or (
        isinstance(node, ast.Attribute) and node.attr == "scope"
    )


@pytest.mark.parametrize("path", sorted(INTEGRATIONS.glob("*.py")), ids=lambda p: p.name)
def test_integrations_use_the_scope_through_its_public_calls(path):
    assert _scope_touches(ast.parse(path.read_text())) == []
