"""FSDP2: parameters, gradients and optimizer state sharded across ranks, merged on rank 0.

Each rank reduces its shard of every parameter; the merged statistics are those of the full
tensors, and equal one process's that saw every rank's data. Under HSDP the replicas of a
shard count once.
"""

from __future__ import annotations

import pytest
import torch

from distributed_worker import assert_same_statistics, run_ranks


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_fsdp_merged_statistics_equal_one_process(tmp_path):
    merged = run_ranks(tmp_path, "--fsdp")
    assert len(list((tmp_path / "tb").iterdir())) == 1  # one run directory, by rank 0 alone
    observed = {(r.site, r.quantity) for r in merged}
    sharded = {"value", "exp_avg", "step_size", "eps_dominance", "update", "update_ratio"}
    assert {("0:weight", q) for q in sharded} | {("0:weight.grad", "l2")} <= observed
    assert_same_statistics(merged)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_hsdp_replicas_are_counted_once(tmp_path):
    """HSDP on 4 ranks: shards within pairs, replicated across them; each element counts once."""
    merged = run_ranks(tmp_path, "--hsdp", world=4)
    assert len(list((tmp_path / "tb").iterdir())) == 1
    assert_same_statistics(merged, world=4)
