"""One rank of tests/test_distributed.py's count test: ranks of different batch sizes.

    torchrun --standalone --nproc_per_node=2 tests/distributed_values_worker.py OUT_DIR

Rank r observes the attention of :class:`SelfAttention` over ``BATCHES[r]`` sequences a step
(no DDP: the same seed gives every rank the same module, and nothing trains); gloo backend,
CPU. Rank 0 pickles the records it wrote, merged across the ranks, to OUT_DIR/records.pkl.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import layerscope
from models import SelfAttention

#: Sequences per step on each rank.
BATCHES = (1, 7)
STEPS = 2


def inputs(rank: int, step: int) -> torch.Tensor:
    """Rank `rank`'s batch on `step`."""
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(BATCHES[rank], 5, 8, generator=g)


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = SelfAttention()
    scope = layerscope.watch(model, lenses=[layerscope.lenses.Attention()])
    for step in range(STEPS):
        model(inputs(rank, step)).square().mean().backward()
        scope.step()
    scope.close()
    if rank == 0:
        (out_dir / "records.pkl").write_bytes(pickle.dumps(scope.records()))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
