"""A watch() that fails leaves the model and the optimizer exactly as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope import lenses
from layerscope.gatherers.optimizer import OptimizerGatherer
from layerscope.sinks.tensorboard import TensorBoardSink


class _Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


def _hooks(model: nn.Module, opt: torch.optim.Optimizer) -> list[object]:
    """Every hook dict torch keeps for the model, its parameters and the optimizer."""
    found: list[object] = []
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_load_state_dict_pre_hooks",
        ):
            found.append((attr, list(getattr(m, attr))))
    for p in model.parameters():
        found.append(list(getattr(p, "_post_accumulate_grad_hooks", None) or ()))
        found.append(list(p._backward_hooks or ()))
    found.append(list(opt._optimizer_step_pre_hooks))
    found.append(list(opt._optimizer_step_post_hooks))
    return found


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize(
    ("target", "attribute"),
    [(OptimizerGatherer, "__init__"), (TensorBoardSink, "__init__")],
    ids=["last-gatherer", "tensorboard-sink"],
)
def test_a_failing_watch_leaves_no_hook_behind(monkeypatch, tmp_path, target, attribute):
    torch.manual_seed(0)
    model = _Tagger()
    opt = torch.optim.Adam(model.parameters())
    before = _hooks(model, opt)
    chosen = [lenses.Recurrent(), lenses.Activations(), lenses.GradientNorms(), lenses.Optimizer()]
    scope = layerscope.watch(model, optimizer=opt, lenses=chosen)
    assert _hooks(model, opt) != before  # the snapshot sees layerscope's hooks
    scope.close()
    monkeypatch.setattr(target, attribute, _boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        layerscope.watch(model, optimizer=opt, lenses=chosen, logdir=str(tmp_path))
    assert _hooks(model, opt) == before
    # and training runs as if layerscope had never been there
    x = torch.randn(2, 5, 4)
    model(x).sum().backward()
    opt.step()
