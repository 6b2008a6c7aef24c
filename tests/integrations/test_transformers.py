"""The Hugging Face callback on a real Trainer with a tiny model: steps, gradients, loss, hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from layerscope.integrations.transformers import LayerscopeCallback  # noqa: E402
from layerscope.sinks.events import read_run  # noqa: E402


class Tiny(nn.Module):
    """A classifier whose forward returns a dict with the loss, as Trainer expects."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, x, labels=None):
        logits = self.fc2(self.act(self.fc1(x)))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Probe(transformers.TrainerCallback):
    """Independent record: the clipped gradient the optimizer is about to apply, by global step."""

    def __init__(self, model: Tiny) -> None:
        self.model, self.grads = model, {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads[state.global_step] = self.model.fc1.weight.grad.norm().item()


def _train(tmp_path, accumulate: int = 1, report_to="none"):
    model = Tiny()
    probe, callback = Probe(model), LayerscopeCallback(flush_every=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=1,
        gradient_accumulation_steps=accumulate,
        learning_rate=0.1,
        logging_steps=1,
        report_to=report_to,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Rows(), callbacks=[probe, callback]
    )
    trainer.train()
    return model, probe, callback, trainer


@pytest.mark.parametrize("accumulate", [1, 2])
def test_steps_and_gradients_follow_the_trainer(tmp_path, accumulate):
    _, probe, callback, trainer = _train(tmp_path, accumulate)
    records = callback.records()
    grads = {r.step: r.value for r in records if r.site == "fc1:weight.grad" and r.quantity == "l2"}
    assert sorted(grads) == sorted(probe.grads) == list(range(trainer.state.global_step))
    assert trainer.state.global_step == 10 // accumulate
    for step, norm in probe.grads.items():
        assert grads[step] == pytest.approx(norm, rel=1e-5)


def test_loss_matches_the_trainers_log(tmp_path):
    _, _, callback, trainer = _train(tmp_path)
    mine = {
        r.step: r.value
        for r in callback.records()
        if r.quantity == "loss" and r.statistic == "last"
    }
    logged = {h["step"] - 1: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert sorted(mine) == sorted(logged)
    for step, loss in logged.items():
        assert mine[step] == pytest.approx(loss, abs=1e-4)


def test_hooks_are_removed_at_train_end(tmp_path):
    model, _, callback, trainer = _train(tmp_path)
    assert callback.scope is None
    assert callback.records()
    for m in model.modules():
        assert not m._forward_hooks
        assert not m._forward_pre_hooks
    for p in model.parameters():
        assert not getattr(p, "_post_accumulate_grad_hooks", None)
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert not inner._optimizer_step_pre_hooks
    assert not inner._optimizer_step_post_hooks


def test_writes_into_the_tensorboard_folder(tmp_path):
    _, probe, _, _ = _train(tmp_path, report_to=["tensorboard"])
    (folder,) = (tmp_path / "runs").glob("*_layerscope")  # beside the Trainer's own run
    runs = read_run(folder)
    written = [
        r
        for records in runs.values()
        for r in records
        if r.site == "fc1:weight.grad" and r.quantity == "l2"
    ]
    assert sorted(r.step for r in written) == sorted(probe.grads)
