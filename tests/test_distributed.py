"""Distributed data parallel: per-rank statistics merged on rank 0 equal one process's."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import layerscope
from distributed_worker import STEPS, lenses
from models import batches, mlp

HERE = Path(__file__).parent


def _reference():
    """One process that sees both ranks' data (the whole batch)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with layerscope.watch(model, optimizer=opt, lenses=lenses()) as scope:
        for x, y in batches("mlp", STEPS, batch=16):
            opt.zero_grad()
            halves = [nn.functional.cross_entropy(model(x[r::2]), y[r::2]) for r in range(2)]
            loss = sum(halves) / 2  # DDP averages the ranks' gradients: the same update
            loss.backward()
            opt.step()
            scope.step(loss=torch.stack([h.detach() for h in halves]))
    return scope.records()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_merged_statistics_equal_one_process(tmp_path):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "distributed_worker.py"),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = pickle.loads((tmp_path / "records.pkl").read_bytes())
    runs = [p for p in (tmp_path / "tb").iterdir()]
    assert len(runs) == 1  # one run directory, written by rank 0 alone

    def key(r):
        return (r.step, r.tag, r.site.removeprefix("module."), r.quantity, r.statistic)

    got = {key(r): r for r in merged}
    want = {key(r): r for r in _reference()}
    assert got.keys() == want.keys()
    assert len(want) > 100  # activations, quantiles, histograms, grad norms, dead units, loss
    for k, expected in want.items():
        actual = got[k]
        if expected.histogram is not None:
            assert actual.histogram.counts == expected.histogram.counts, k
        elif k[2] == "" and k[3] == "loss" and k[4] == "last":
            # each rank's loss is one value: the merged mean is the mean of the ranks' losses
            assert actual.value == pytest.approx(expected.value, rel=1e-6), k
        else:
            assert actual.value == pytest.approx(expected.value, rel=1e-5, abs=1e-7), k
