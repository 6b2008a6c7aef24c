"""The HF callback with GPT-2 and BERT built from configs: loss, TensorBoard folders, findings."""

from __future__ import annotations

import logging

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from layerscope.integrations.transformers import LayerscopeCallback  # noqa: E402
from layerscope.sinks.events import read_run  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token rows; some label positions are ignored (-100), unevenly across rows, so
    that micro-batches hold different numbers of items and only an item-weighted sum is right."""

    def __init__(self, n: int = 16, length: int = 12, vocab: int = 64) -> None:
        g = torch.Generator().manual_seed(3)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.labels = self.ids.clone()
        for i in range(n):
            self.labels[i, length - (i % 5) * 2 :] = -100

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, n_inner=64
    )
    return transformers.GPT2LMHeadModel(config)


def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=64,
        max_position_embeddings=32,
    )
    return transformers.BertForMaskedLM(config)


def _train(tmp_path, model, accumulate=1, report_to="none", callback=None, output="out"):
    callback = callback or LayerscopeCallback(flush_every=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / output),
        per_device_train_batch_size=2,
        num_train_epochs=1,
        gradient_accumulation_steps=accumulate,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=report_to,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tokens(), callbacks=[callback]
    )
    trainer.train()
    return callback, trainer


@pytest.mark.parametrize("make", [gpt2, bert], ids=["gpt2", "bert"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_recorded_loss_is_the_trainers_logged_loss(tmp_path, make, accumulate):
    callback, trainer = _train(tmp_path, make(), accumulate)
    mine = {
        r.step: r.value
        for r in callback.records()
        if r.quantity == "loss" and r.statistic == "last"
    }
    logged = {h["step"] - 1: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert sorted(mine) == sorted(logged) == list(range(16 // 2 // accumulate))
    for step, loss in logged.items():  # the Trainer rounds its log to 4 decimals
        assert mine[step] == pytest.approx(loss, abs=1e-4), step


def test_each_run_writes_a_tensorboard_folder_of_its_own(tmp_path):
    for _ in range(2):  # the same output_dir, in the same second
        _train(tmp_path, gpt2(), report_to=["tensorboard"])
    runs = tmp_path / "out" / "runs"
    mine = sorted(p for p in runs.iterdir() if p.name.endswith(("_layerscope", "_layerscope_2")))
    theirs = sorted(p for p in runs.iterdir() if "_layerscope" not in p.name)
    assert len(mine) == 2
    assert theirs  # the Trainer's own run folder, beside ours
    assert mine[0].name.startswith(theirs[0].name[: len("Dec03_13-16")])  # its date format
    for folder in mine:  # 8 steps each: no folder holds both runs' records
        steps = [r.step for records in read_run(folder).values() for r in records]
        losses = [s for s in steps if s is not None]
        assert sorted(set(losses)) == list(range(8))
        assert len(losses) == len(steps)


def test_without_tensorboard_it_says_where_the_records_are(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="layerscope"):
        callback, _ = _train(tmp_path, gpt2(), report_to=[])
    assert any("callback.records()" in m for m in caplog.messages)
    assert callback.records()
    assert not (tmp_path / "out" / "runs").exists()


def test_findings_after_training(tmp_path):
    model = gpt2()
    with torch.no_grad():  # the second block's MLP outputs non-finite values from step 0
        model.transformer.h[1].mlp.c_proj.weight.fill_(float("inf"))
    first: list[str] = []  # the reference: torch's own hooks, in execution order

    def spot(name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor) and not torch.isfinite(out).all() and not first:
                first.append(name)

        return hook

    handles = [m.register_forward_hook(spot(n)) for n, m in model.named_modules() if n]
    callback, _ = _train(tmp_path, model)
    for handle in handles:
        handle.remove()
    assert callback.scope is None  # training has ended
    origins = [f for f in callback.findings() if f.kind == "nan_origin"]
    assert origins
    assert origins[0].step == 0
    assert origins[0].site == f"{first[0]}:output"
