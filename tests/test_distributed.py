"""Distributed data parallel: per-rank statistics merged on rank 0 equal one process's."""

from __future__ import annotations

import pytest
import torch

from distributed_worker import assert_same_statistics, run_ranks


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_ddp_merged_statistics_equal_one_process(tmp_path):
    merged = run_ranks(tmp_path)
    assert len(list((tmp_path / "tb").iterdir())) == 1  # one run directory, by rank 0 alone
    assert_same_statistics(merged)
