"""The Lightning callback against a real Trainer: steps, gradients, loss, logger, hooks."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")
from layerscope.integrations.lightning import LayerscopeCallback  # noqa: E402
from layerscope.sinks.events import read_run  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*LeafSpec.*is deprecated:FutureWarning",
)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.losses: list[tuple[int, float]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.losses.append((self.trainer.global_step, loss.item()))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Probe(pl.Callback):
    """Independent record of what the trainer did: global step and gradient at each step."""

    def __init__(self) -> None:
        self.grads: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads[trainer.global_step] = pl_module.net[0].weight.grad.norm().item()


def _loader(batches: int = 10):
    g = torch.Generator().manual_seed(1)
    x, y = (
        torch.randn(batches * 4, 8, generator=g),
        torch.randint(0, 3, (batches * 4,), generator=g),
    )
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def _trainer(tmp_path, callbacks, **options):
    """A one-process CPU Trainer that prints nothing; `options` add to or override these."""
    quiet = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return pl.Trainer(callbacks=callbacks, **{**quiet, **options})


def _fit(tmp_path, logger, accumulate: int, epochs: int = 1):
    model, probe, callback = Tiny(), Probe(), LayerscopeCallback(flush_every=2)
    trainer = _trainer(
        tmp_path,
        [probe, callback],
        max_epochs=epochs,
        devices=1,
        logger=logger,
        accumulate_grad_batches=accumulate,
    )
    trainer.fit(model, _loader())
    return model, probe, callback, trainer


def _values(records, site, quantity="l2"):
    return {r.step: r.value for r in records if r.site == site and r.quantity == quantity}


@pytest.mark.parametrize("accumulate", [1, 3])
def test_steps_and_gradients_follow_the_trainer(tmp_path, accumulate):
    model, probe, callback, trainer = _fit(tmp_path, False, accumulate)
    records = callback.records()
    grads = _values(records, "net.0:weight.grad")
    # 10 batches: 10 steps, or ceil(10 / 3) = 4 with the epoch's last partial accumulation
    assert sorted(grads) == sorted(probe.grads) == list(range(trainer.global_step))
    for step, norm in probe.grads.items():
        assert grads[step] == pytest.approx(norm, rel=1e-5)
    # the loss of a step is the mean of its micro-batches' losses, as training_step returned them
    losses = {r.step: r.value for r in records if r.quantity == "loss" and r.statistic == "last"}
    for step in range(trainer.global_step):
        mine = [v for s, v in model.losses if s == step]
        assert losses[step] == pytest.approx(sum(mine) / len(mine), rel=1e-5)


def test_hooks_are_removed_at_train_end(tmp_path):
    model, _, callback, trainer = _fit(tmp_path, False, 1)
    assert callback.scope is None
    assert callback.records()
    for m in model.modules():
        assert not m._forward_hooks
        assert not m._forward_pre_hooks
    for p in model.parameters():
        assert not getattr(p, "_post_accumulate_grad_hooks", None)
    opt = trainer.optimizers[0]
    assert not opt._optimizer_step_pre_hooks
    assert not opt._optimizer_step_post_hooks


def test_exception_closes_the_scope(tmp_path):
    class Failing(Tiny):
        def training_step(self, batch, batch_idx):
            if self.trainer.global_step == 3:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    model, callback = Failing(), LayerscopeCallback()
    trainer = _trainer(tmp_path, [callback])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, _loader())
    assert callback.scope is None
    assert {r.step for r in callback.records()} == {0, 1, 2}
    assert all(not m._forward_hooks for m in model.modules())


def test_writes_into_the_tensorboard_loggers_log_dir(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path, name="tb")
    _, probe, _, _ = _fit(tmp_path, logger, 1)
    runs = read_run(logger.log_dir)
    written = [
        r
        for records in runs.values()
        for r in records
        if r.site == "net.0:weight.grad" and r.quantity == "l2"
    ]
    assert sorted(r.step for r in written) == sorted(probe.grads)


def test_other_loggers_get_metrics_through_log_metrics(tmp_path):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="csv")
    _, probe, callback, _ = _fit(tmp_path, logger, 1)
    with open(f"{logger.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    name = "model.net.0/weight.grad.l2"  # named as in TensorBoard
    logged = {int(row["step"]): float(row[name]) for row in rows if row.get(name)}
    assert sorted(logged) == sorted(probe.grads)
    assert logged[0] == pytest.approx(probe.grads[0], rel=1e-5)


def _resumable_fit(tmp_path, epochs, saves_to, ckpt_path=None):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from layerscope import lenses

    model = Tiny()
    with torch.no_grad():  # some units of the first layer die: DeadUnits has a window to carry
        model.net[0].bias.fill_(-1.0)
    callback = LayerscopeCallback(
        lenses=[lenses.Loss(), lenses.GradientNorms(of=("weight",)), lenses.DeadUnits(window=8)],
        flush_every=3,
    )
    saver = ModelCheckpoint(dirpath=saves_to, filename="last")
    trainer = _trainer(tmp_path, [callback, saver], max_epochs=epochs, enable_checkpointing=True)
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return callback, saver


def test_resumed_fit_continues_the_scope_from_the_checkpoint(tmp_path):
    whole, _ = _resumable_fit(tmp_path / "whole", 2, tmp_path / "whole")
    _, saver = _resumable_fit(tmp_path / "first", 1, tmp_path / "ckpt")
    checkpoint = str(tmp_path / "first.ckpt")
    os.replace(saver.best_model_path, checkpoint)
    saved = torch.load(checkpoint, weights_only=False)["callbacks"]
    (state,) = [s for key, s in saved.items() if "LayerscopeCallback" in key]
    assert state["step"] == 10  # the trainer's global step when it saved
    # the same checkpoint folder, as a resumed run has (emptied: Lightning warns of old files)
    resumed, _ = _resumable_fit(tmp_path / "resumed", 2, tmp_path / "ckpt", checkpoint)

    def scalars(callback):
        return {
            (r.step, r.site, r.quantity, r.statistic): r.value
            for r in callback.records()
            if r.step >= 10
        }

    expected, got = scalars(whole), scalars(resumed)
    assert min(k[0] for k in got) == 10
    assert got.keys() == expected.keys()
    assert any(k[2] == "dead" for k in got)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_findings_after_training(tmp_path):
    model = Tiny()
    with torch.no_grad():  # the second layer outputs non-finite values from the first step
        model.net[2].weight.fill_(float("inf"))
    first: list[str] = []  # the reference: torch's own hooks, in execution order
    for name, module in model.net.named_children():
        module.register_forward_hook(
            lambda m, a, out, name=name: (
                first.append(f"net.{name}") if not first and not torch.isfinite(out).all() else None
            )
        )
    callback = LayerscopeCallback(flush_every=2)
    trainer = _trainer(tmp_path, [callback])
    trainer.fit(model, _loader())
    assert callback.scope is None  # training has ended
    origins = [f for f in callback.findings() if f.kind == "nan_origin"]
    assert origins
    assert origins[0].step == 0
    assert origins[0].site == f"{first[0]}:output"
