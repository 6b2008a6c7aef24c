"""One rank of the distributed test; run by torchrun from tests/test_distributed.py.

    torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py OUT_DIR

Each rank trains the same MLP under DDP (gloo, CPU) on its half of every batch, observed by
layerscope; rank 0 pickles the records it wrote to OUT_DIR/records.pkl.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import layerscope
from models import batches, mlp

STEPS = 4


def lenses() -> list[layerscope.lenses.Lens]:
    """The lenses both the distributed run and its single-process reference use."""
    from layerscope import lenses as L

    return [
        L.Loss(),
        L.Activations(statistics=("mean", "std", "min", "max", "median", "iqr", "histogram")),
        L.GradientNorms(of=("weight", "bias")),
        L.DeadUnits(window=2),
    ]


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scope = layerscope.watch(
        model, optimizer=opt, lenses=lenses(), logdir=str(out_dir / "tb"), flush_every=3
    )
    for x, y in batches("mlp", STEPS, batch=16):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[rank::world]), y[rank::world])
        loss.backward()
        opt.step()
        scope.step(loss=loss)
    scope.close()
    if rank == 0:
        (out_dir / "records.pkl").write_bytes(pickle.dumps(scope.records()))
    else:
        assert scope.records() == []
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
