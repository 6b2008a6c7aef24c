"""False alarms are bugs: healthy real models (GPT-2, BERT, an LSTM language model, a BatchNorm
CNN), trained with SGD or Adam, with frozen parts or without, produce no warning or error."""

from __future__ import annotations

import pytest

from hf_models import (
    LSTMLM,
    bert,
    bn_cnn,
    freeze_embeddings,
    gpt2,
    image_loss,
    lm_loss,
    quick_lenses,
    train_lm,
)

MODELS = {
    "gpt2": (gpt2, lm_loss),
    "bert": (bert, lm_loss),
    "lstm-lm": (LSTMLM, lm_loss),
    "bn-cnn": (bn_cnn, image_loss),
}


@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen-embeddings"])
@pytest.mark.parametrize(("lr", "adam"), [(1e-3, True), (0.05, False)], ids=["adam", "sgd"])
@pytest.mark.parametrize("name", list(MODELS))
def test_healthy_real_models_raise_no_warning(name, lr, adam, frozen):
    make, loss_of = MODELS[name]
    model = freeze_embeddings(make()) if frozen else make()
    # Every lens on every step, windows of 5: each check has had its chance after 8 steps.
    scope, _ = train_lm(model, 8, adam=adam, lr=lr, loss_of=loss_of, lenses=quick_lenses())
    alarms = [(f.kind, f.site) for f in scope.findings() if f.severity in ("warning", "error")]
    assert alarms == []
