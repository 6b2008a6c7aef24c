"""One rank of tests/test_distributed.py's failure test: a rank that fails must not hang the other.

    torchrun --standalone --nproc_per_node=2 tests/distributed_failure_worker.py OUT_DIR

Each rank trains its own MLP (no DDP: the training itself exchanges nothing, so only
layerscope's flushes could block). Rank 1 raises at step 3, catches it and stays alive without
flushing again, as a rank stuck in its own error handling does; it waits for rank 0 to finish
(at most a minute). Rank 0 trains every step and writes what it saw to OUT_DIR/rank0.json.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import layerscope
from models import batches, mlp

STEPS = 8


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scope = layerscope.watch(model, optimizer=opt, flush_every=2)
    started, trained = time.monotonic(), 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for step, (x, y) in enumerate(batches("mlp", STEPS)):
                if rank == 1 and step == 3:
                    raise RuntimeError("rank 1 fails")
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                trained += 1
                scope.step(loss=loss)
            scope.close()
        except RuntimeError:
            done = out_dir / "rank0.json"
            while not done.exists() and time.monotonic() - started < 60:
                time.sleep(0.2)
            return
    result = {
        "seconds": time.monotonic() - started,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
        "steps": sorted({r.step for r in scope.records()}),
        "trained": trained,
    }
    (out_dir / "rank0.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
