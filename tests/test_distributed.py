"""Distributed data parallel: per-rank statistics merged on rank 0 equal one process's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from distributed_worker import assert_same_statistics, run_ranks, torchrun

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_merged_statistics_equal_one_process(tmp_path):
    merged = run_ranks(tmp_path)
    assert len(list((tmp_path / "tb").iterdir())) == 1  # one run directory, by rank 0 alone
    assert_same_statistics(merged)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_a_failed_rank_is_named_and_does_not_hang_the_others(tmp_path):
    # Without a bound of its own, rank 0 waits in the flush for the process group's timeout.
    done = torchrun(
        HERE / "distributed_failure_worker.py",
        str(tmp_path),
        timeout=90,
        LAYERSCOPE_DIST_TIMEOUT="3",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "rank0.json").read_text())
    assert result["trained"] == 8  # rank 0's training went on to its last step
    assert result["seconds"] < 30
    (warning,) = result["warnings"]
    assert "rank 1 of 2 did not reach it within 3 s" in warning
    assert result["steps"] == [0]  # the flush at step 2 merged step 0 (step 1 waits for the next)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ranks_of_different_batch_sizes_weigh_as_their_items(tmp_path):
    # Rank 0 sees 1 sequence a step, rank 1 sees 7: the merged per-head means are those of all
    # 8, as torch computes them, not the mean of the two ranks' means; the heads' output norms
    # are the norms over all 8.
    from distributed_values_worker import BATCHES, STEPS, inputs
    from models import SelfAttention, head_outputs

    done = torchrun(HERE / "distributed_values_worker.py", str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    records = pickle.loads((tmp_path / "records.pkl").read_bytes())
    table = {(r.step, r.site, r.quantity): r.value for r in records}
    model = SelfAttention()
    for step in range(STEPS):
        x = torch.cat([inputs(rank, step) for rank in range(len(BATCHES))])
        with torch.no_grad():
            _, w = model.attn(x, x, x, need_weights=True, average_attn_weights=False)
            per_head = head_outputs(model.attn, x, w).double()
        w = w.double()
        want = {
            "entropy": -torch.special.xlogy(w, w).sum(-1).mean(dim=(0, 2)),
            "max_weight": w.amax(-1).mean(dim=(0, 2)),
            "first_key_mass": w[..., 0].mean(dim=(0, 2)),
            "output_l2": torch.linalg.vector_norm(per_head, dim=(0, 2, 3)),
        }
        for quantity, per_head in want.items():
            for h, value in enumerate(per_head.tolist()):
                got = table[(step, f"attn:attention.head{h}", quantity)]
                assert got == pytest.approx(value, rel=1e-5), (step, quantity, h)
