"""The HF callback under ``torchrun --nproc_per_node=2`` (gloo, CPU): every rank attaches."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from distributed_worker import torchrun

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HERE = Path(__file__).parent


def test_torchrun_gpt2_loss_is_the_trainers_logged_loss(tmp_path):
    # A collective only some ranks join aborts or hangs: either fails here.
    done = torchrun(
        HERE / "hf_ddp_worker.py", str(tmp_path), timeout=100, LAYERSCOPE_DIST_TIMEOUT="20"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records, history, world = pickle.loads((tmp_path / "result.pkl").read_bytes())
    assert world == 2
    mine = {r.step: r.value for r in records if r.quantity == "loss" and r.statistic == "last"}
    # The Trainer's log: the mean over ranks of each rank's step loss, its micro-batches summed
    logged = {h["step"] - 1: h["loss"] for h in history if "loss" in h}
    assert sorted(mine) == sorted(logged) == list(range(4))  # 32 rows / 2 ranks / 2 / 2
    for step, loss in logged.items():
        assert mine[step] == pytest.approx(loss, abs=1e-4), step
