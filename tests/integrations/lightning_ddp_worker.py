"""A Lightning run under ``Trainer(strategy="ddp", devices=2, accelerator="cpu")``.

    python tests/integrations/lightning_ddp_worker.py OUT_DIR [--fail]

Lightning starts the second rank itself, running this script again. Each rank writes the losses
its ``training_step`` saw, by global step, to OUT_DIR/losses<rank>.json, and the gradient
norm the optimizer applied (all-reduced: the same on both ranks) to OUT_DIR/grads<rank>.json;
rank 0 pickles the callback's records and findings to OUT_DIR/records.pkl. With ``--fail``
rank 1 raises at step 3 and every rank writes the exception it ended with to
OUT_DIR/error<rank>.txt.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from layerscope.integrations.lightning import LayerscopeCallback

warnings.filterwarnings("ignore")  # Lightning's advice on workers and logging under DDP


class Tiny(pl.LightningModule):
    def __init__(self, fail: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.fail = fail
        self.losses: dict[int, float] = {}
        self.grads: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        if self.fail and self.global_rank == 1 and self.trainer.global_step == 3:
            raise RuntimeError("rank 1 fails")
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.losses[self.trainer.global_step] = loss.item()
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.grads[self.trainer.global_step] = self.net[0].weight.grad.norm().item()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(out_dir: Path, fail: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model, callback = Tiny(fail), LayerscopeCallback(flush_every=2)
    trainer = pl.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    rank = 0
    try:
        trainer.fit(model, loader)
        rank = trainer.global_rank
    except BaseException as error:  # noqa: BLE001 - written down for the test to read
        rank = trainer.global_rank
        (out_dir / f"error{rank}.txt").write_text(repr(error))
    (out_dir / f"losses{rank}.json").write_text(json.dumps(model.losses))
    (out_dir / f"grads{rank}.json").write_text(json.dumps(model.grads))
    if rank == 0:
        records = callback.records()
        (out_dir / "records.pkl").write_bytes(pickle.dumps((records, callback.findings())))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--fail" in sys.argv[2:])
