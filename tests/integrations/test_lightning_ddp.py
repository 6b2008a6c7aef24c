"""The Lightning callback under ``strategy="ddp"`` on 2 CPU processes (gloo): all ranks attach."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from distributed_worker import run_bounded

pytest.importorskip("lightning.pytorch")

WORKER = Path(__file__).parent / "lightning_ddp_worker.py"


def _run(out_dir: Path, *flags: str) -> CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", LAYERSCOPE_DIST_TIMEOUT="20")
    # A hang (a collective only some ranks join) fails here instead of stalling the suite.
    return run_bounded([sys.executable, str(WORKER), str(out_dir), *flags], env, 100, out_dir)


def _per_rank(out_dir: Path, name: str) -> list[dict[int, float]]:
    return [
        {int(k): v for k, v in json.loads((out_dir / f"{name}{r}.json").read_text()).items()}
        for r in range(2)
    ]


def test_ddp_merges_both_ranks_losses_and_reads_the_reduced_gradients(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records, findings = pickle.loads((tmp_path / "records.pkl").read_bytes())
    losses, grads = _per_rank(tmp_path, "losses"), _per_rank(tmp_path, "grads")
    steps = list(range(6))  # 48 rows, 2 ranks, batches of 4
    assert sorted(losses[0]) == sorted(losses[1]) == steps
    mine = {r.step: r.value for r in records if r.quantity == "loss" and r.statistic == "last"}
    assert sorted(mine) == steps
    for step in steps:  # each rank's loss is part of the statistic
        assert mine[step] == pytest.approx((losses[0][step] + losses[1][step]) / 2, rel=1e-6)
    norms = {
        r.step: r.value for r in records if r.site == "net.0:weight.grad" and r.quantity == "l2"
    }
    assert sorted(norms) == steps
    for step in steps:
        assert grads[0][step] == pytest.approx(grads[1][step], rel=1e-6)  # all-reduced
        assert norms[step] == pytest.approx(grads[0][step], rel=1e-5)
    assert findings == []  # a healthy run; the callback answers after training


def test_a_rank_that_raises_does_not_hang_the_other(tmp_path):
    done = _run(tmp_path, "--fail")
    assert (tmp_path / "error1.txt").read_text() == "RuntimeError('rank 1 fails')", (
        done.stdout + done.stderr
    )
    # rank 0 learns of it from the training's own collective (which rank 1 left), in seconds
    assert (tmp_path / "error0.txt").exists()
    records, _ = pickle.loads((tmp_path / "records.pkl").read_bytes())
    assert {r.step for r in records} <= {0, 1, 2}
