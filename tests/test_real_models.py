"""Real models (transformers' GPT-2 and BERT from small configs): the numbers are right."""

from __future__ import annotations

import math

import pytest

import layerscope
from hf_models import bert, gpt2, train_lm
from layerscope import lenses

MODELS = {"gpt2": gpt2, "bert": bert}


def last_step(scope: layerscope.Scope, quantity: str) -> dict[str, float]:
    """site -> value of `quantity` at the scope's last recorded step."""
    records = [r for r in scope.records() if r.quantity == quantity]
    last = max(r.step for r in records)
    return {r.site: r.value for r in records if r.step == last}


@pytest.mark.parametrize("name", list(MODELS))
def test_tied_weights_count_once_in_the_global_norm(name):
    model = MODELS[name]()
    scope, totals = train_lm(model, 3, lenses=[lenses.GradientNorms()], clip=math.inf)
    global_norms = [r.value for r in scope.records() if r.quantity == "global_l2"]
    assert global_norms == pytest.approx(totals, rel=1e-5)  # torch's own total norm


@pytest.mark.parametrize("name", list(MODELS))
def test_tied_weights_have_one_site_and_shares_match_torch(name):
    model = MODELS[name]()
    scope, _ = train_lm(model, 2, lenses=[lenses.GradientNorms(of=("weight", "bias"))])
    # The reference: each parameter once, at the first module holding it.
    squares: dict[str, float] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if id(param) not in seen and param.grad is not None:
                seen.add(id(param))
                squares[module_name] = squares.get(module_name, 0.0) + float(
                    param.grad.double().square().sum()
                )
    total = sum(squares.values())
    shares = last_step(scope, "share")
    assert shares == pytest.approx({m: v / total for m, v in squares.items()}, rel=1e-5)
    grad_sites = {r.site for r in scope.records() if r.site.endswith(":weight.grad")}
    tied = "lm_head" if name == "gpt2" else "cls.predictions.decoder"
    assert f"{tied}:weight.grad" not in grad_sites
    embedding = "transformer.wte" if name == "gpt2" else "bert.embeddings.word_embeddings"
    assert f"{embedding}:weight.grad" in grad_sites


def test_tied_weight_is_updated_once_by_the_optimizer_lens():
    model = gpt2()
    scope, _ = train_lm(model, 2, lenses=[lenses.Optimizer()])
    sites = {r.site for r in scope.records() if r.quantity == "update_ratio"}
    assert "transformer.wte:weight" in sites
    assert "lm_head:weight" not in sites


def output_norms(checkpointing: dict | None) -> dict[tuple[str, str], float]:
    """Step 0's output and output-gradient L2 norms of GPT-2, checkpointed as asked or not."""
    model = gpt2()
    if checkpointing is not None:
        model.activation_checkpointing_enable(checkpointing)
    scope, _ = train_lm(
        model,
        1,
        lenses=[lenses.OutputNorms(statistics=("l2",)), lenses.GradientNorms(of=("output",))],
    )
    return {(r.site, r.quantity): r.value for r in scope.records() if r.step == 0}


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_activation_checkpointing_observes_each_forward_call_once(reentrant):
    plain = output_norms(None)
    checkpointed = output_norms({"use_reentrant": reentrant})
    assert "transformer.h.0.mlp.c_fc:output" in {site for site, _ in plain}
    assert checkpointed == pytest.approx(plain, rel=1e-5)  # recomputed: 1.414x before


def test_the_shared_site_names_the_other_holders(caplog):
    caplog.set_level("INFO", logger="layerscope")
    scope, _ = train_lm(gpt2(), 1, lenses=[lenses.GradientNorms(of=("weight",))])
    shared = [r.getMessage() for r in caplog.records if "same parameter" in r.getMessage()]
    assert shared == [
        "layerscope: lm_head.weight is the same parameter as site transformer.wte:weight; "
        "it is observed once, there"
    ]
