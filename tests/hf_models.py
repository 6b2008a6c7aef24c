"""Real models for the real-model tests, and a training loop.

transformers' GPT-2 and BERT built from small configs (nothing is downloaded), an LSTM language
model and a BatchNorm CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

import layerscope

transformers = pytest.importorskip("transformers")

VOCAB = 64
SEQ = 12


def gpt2(layers: int = 2, seed: int = 0, **config: object) -> nn.Module:
    """A small GPT2LMHeadModel (its ``lm_head`` tied to ``transformer.wte``), dropout off."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=32,
        n_embd=32,
        n_layer=layers,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        **config,
    )
    return transformers.GPT2LMHeadModel(cfg)


def bert(layers: int = 2, seed: int = 0, **config: object) -> nn.Module:
    """A small BertForMaskedLM (decoder tied to the word embeddings), dropout off."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **config,
    )
    return transformers.BertForMaskedLM(cfg)


class LSTMLM(nn.Module):
    """Embedding -> 2-layer LSTM -> linear head over the vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(ids))
        logits = self.head(hidden)
        targets = ids[:, 1:].reshape(-1)
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), targets)


def bn_cnn() -> nn.Sequential:
    """Conv/BatchNorm/ReLU twice, pooled, then a 3-way head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 3),
    )


def quick_lenses(window: int = 5) -> list[layerscope.lenses.Lens]:
    """The default lenses, every one on every step and every window `window` steps: each check
    can find what it looks for within a short run."""
    lenses = layerscope.lenses
    return [
        lenses.Loss(),
        lenses.Activations(),
        lenses.OutputNorms(),
        lenses.GradientNorms(),
        lenses.Parameters(every=1),
        lenses.DeadUnits(window=window),
        lenses.GradientDeath(window=window),
        lenses.Distributions(every=window),
        lenses.Optimizer(every=1),
        layerscope.health.NonFinite(),
        layerscope.health.Health(checks=[c for c in layerscope.health.CHECKS if c != "nan_origin"]),
    ]


def image_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """A 3-way classification loss on 8x8 images drawn from `ids` (for :func:`bn_cnn`)."""
    g = torch.Generator().manual_seed(int(ids.sum()))
    x = torch.randn(16, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, :4, :4].mean((1, 2)) > 0).long()
    return nn.functional.cross_entropy(model(x), y)


def freeze_embeddings(model: nn.Module) -> nn.Module:
    """Freeze every embedding table (tied output layers with them) and, for the CNN, the first
    convolution."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.weight.requires_grad_(False)
    if isinstance(model, nn.Sequential):
        model[0].requires_grad_(False)
    return model


def token_batches(steps: int, batch: int = 8, seed: int = 1) -> list[torch.Tensor]:
    """Token ids with a learnable pattern (each next token is the previous one plus one)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (steps, batch, 1), generator=g)
    return list((start + torch.arange(SEQ)) % VOCAB)


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The language-modelling loss of `model` on `ids` (next token, or masked tokens for BERT)."""
    if isinstance(model, transformers.BertPreTrainedModel):
        labels = ids.clone()
        masked = ids.clone()
        masked[:, ::3] = 0  # a fixed mask: learnable, and every step the same positions
        labels[:, 1::3] = -100
        labels[:, 2::3] = -100
        return model(input_ids=masked, labels=labels).loss
    if isinstance(model, transformers.PreTrainedModel):
        return model(input_ids=ids, labels=ids).loss
    return model(ids)


def train_lm(
    model: nn.Module,
    steps: int = 6,
    *,
    adam: bool = True,
    lr: float = 1e-3,
    lenses: Sequence[layerscope.lenses.Lens] | None = None,
    clip: float | None = None,
    loss_of: Callable[[nn.Module, torch.Tensor], torch.Tensor] = lm_loss,
    data: Sequence[torch.Tensor] | None = None,
    **watch: object,
) -> tuple[layerscope.Scope, list[float | None]]:
    """Train `model` under ``watch``; returns the closed scope and clip_grad_norm_'s totals."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if adam else torch.optim.SGD(params, lr=lr, momentum=0.9)
    totals: list[float | None] = []
    batches = data if data is not None else token_batches(steps)
    with layerscope.watch(model, opt, lenses=lenses, **watch) as scope:  # type: ignore[arg-type]
        for ids in batches:
            opt.zero_grad()
            loss = loss_of(model, ids)
            loss.backward()
            totals.append(
                float(torch.nn.utils.clip_grad_norm_(params, clip)) if clip is not None else None
            )
            opt.step()
            scope.step(loss=loss)
    return scope, totals
