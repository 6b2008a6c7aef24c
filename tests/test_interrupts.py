"""Ctrl-C caught by the training loop, or a logdir deleted mid-run, loses nothing silently."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import layerscope
from layerscope import lenses
from models import batches, mlp


class _Collect:
    """A sink that keeps every record it is given."""

    def __init__(self) -> None:
        self.records = []

    def write(self, records):
        self.records.extend(records)

    def close(self):
        pass


class _InterruptedOnce(_Collect):
    """A sink whose second write is interrupted by Ctrl-C."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, records):
        self.writes += 1
        if self.writes == 2:
            raise KeyboardInterrupt
        super().write(records)


def test_a_ctrl_c_during_a_flush_loses_no_records():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    interrupted, collect = _InterruptedOnce(), _Collect()
    scope = layerscope.watch(
        model, optimizer=opt, lenses=[lenses.Loss()], sinks=[interrupted, collect], flush_every=2
    )
    steps_run = 0
    try:
        for x, y in batches("mlp", 8):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()  # the flush at step 4 is interrupted
            scope.step(loss=loss)
            steps_run += 1
    except KeyboardInterrupt:
        pass  # the user's loop stops training and goes on to save what it has
    scope.close()
    assert steps_run < 8  # interrupted
    expected = sorted(scope.records())
    assert [r.step for r in expected] == list(range(steps_run))
    assert sorted(collect.records) == expected
    assert sorted(interrupted.records) == expected


def test_a_deleted_logdir_is_recreated_and_said(tmp_path):
    logdir = tmp_path / "run"
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scope = layerscope.watch(
        model, optimizer=opt, lenses=[lenses.Loss()], logdir=str(logdir), flush_every=2
    )
    for step, (x, y) in enumerate(batches("mlp", 8)):
        if step == 5:
            shutil.rmtree(logdir)  # a cleanup script, a user in another terminal
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if step == 5:
            with pytest.warns(RuntimeWarning, match="was deleted") as caught:
                opt.step()  # the next flush finds the file gone
        else:
            opt.step()
        scope.step(loss=loss)
    scope.close()
    reader = EventAccumulator(str(logdir))
    reader.Reload()
    first_kept = int(re.search(r"before step (\d+) are lost", str(caught[0].message))[1])
    assert 0 < first_kept <= 5
    steps = [e.step for e in reader.Scalars("loss")]
    assert steps == list(range(first_kept, 8))  # everything since is in the new file
