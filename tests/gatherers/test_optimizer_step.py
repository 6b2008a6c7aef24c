"""The one-pass C++ read of an optimizer step (``_core.summarize_step``) against numpy, and the
Optimizer lens's records through it against the torch-op path on real training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.dlpack import to_dlpack

import layerscope
from layerscope import _core
from layerscope.gatherers.optimizer import OptimizerGatherer
from layerscope.lenses import Optimizer
from layerscope.stats import SiteSummary
from layerscope.stats.tensors import summarize_cpu, summary_of_values
from oracle import summary_oracle

FIELDS = SiteSummary.fields


def _assert_fields(got: SiteSummary, want: dict[str, float]) -> None:
    # The kernel's documented precision: the sum within 5e-7 of l1, the rest 1e-6 relative.
    mean_error = 1e-6 * want["l1"] / max(want["count"], 1)
    for name in FIELDS:
        value = getattr(got, name)
        close = pytest.approx(want[name], rel=1e-6, abs=mean_error if name == "mean" else 1e-12)
        assert math.isnan(value) if math.isnan(want[name]) else value == close, name


@pytest.mark.parametrize("size", [1, 513, 4096, 20_000, 1_300_000])
def test_summarize_step_matches_numpy(size):
    gen = torch.Generator().manual_seed(size)
    after = torch.randn(size, generator=gen)
    before = after - 1e-3 * torch.randn(size, generator=gen)
    momentum = 1e-2 * torch.randn(size, generator=gen)
    second = (1e-3 * torch.randn(size, generator=gen)) ** 2
    if size > 500:
        after[7], before[500], momentum[3], second[0], second[400] = (
            math.nan, math.inf, -math.inf, math.nan, math.inf,
        )  # fmt: skip
    correction, eps, lr, stride = 0.05, 1e-8, 1e-3, max(1, size // 1000)
    level = eps * eps * correction * 1e6  # some v below it
    update, states, adam = _core.summarize_step(
        size,
        to_dlpack(after),
        to_dlpack(before),
        [to_dlpack(momentum)],
        to_dlpack(second),
        correction,
        eps,
        lr,
        level,
        stride,
    )
    delta = (after - before).numpy()  # float32 differences, as torch rounds them
    fields, delta_norm, before_norm = update
    _assert_fields(fields, summary_oracle(delta))
    wide = before.double().numpy()
    want_before_norm = np.sqrt((wide**2).sum())
    assert before_norm == pytest.approx(want_before_norm, rel=1e-6)
    want_delta_norm = np.sqrt((delta.astype(np.float64) ** 2).sum())
    assert delta_norm == pytest.approx(want_delta_norm, rel=1e-6, nan_ok=True)
    _assert_fields(states[0], summary_oracle(momentum.numpy()))
    v_fields, smallest, largest, below, sizes = adam
    v = second.double().numpy()
    _assert_fields(v_fields, summary_oracle(second.numpy()))
    present = v[~np.isnan(v)]
    assert (smallest, largest) == (present.min(), present.max())
    assert below == int((present < level).sum())
    want_sizes = lr / (np.sqrt(v[::stride] / correction) + eps)
    np.testing.assert_allclose(sizes, want_sizes, rtol=1e-6)


def test_summarize_step_rejects_mismatched_arrays():
    x = torch.zeros(10)
    with pytest.raises(ValueError, match="holds 9 elements"):
        _core.summarize_step(10, to_dlpack(x), to_dlpack(x[:9]), [], None)
    with pytest.raises(ValueError, match="both after and before"):
        _core.summarize_step(10, to_dlpack(x), None, [], None)
    with pytest.raises(ValueError, match="stride"):
        _core.summarize_step(10, None, None, [], to_dlpack(x), 1.0, 1e-8, 1e-3, 0.0, 0)


@pytest.mark.parametrize(
    "values", [[0.25], [0.0], [math.nan], [3.0, -1.5], [math.inf, 2.0], [1e-30, 1e30]]
)
def test_summary_of_values_is_what_the_kernel_gives(values):
    got = summary_of_values(values)
    want = summarize_cpu(torch.tensor(values, dtype=torch.float64), None, 0.0, None)
    for name in FIELDS:
        assert getattr(got, name) == pytest.approx(getattr(want, name), nan_ok=True), name


OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-3),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=1e-4, amsgrad=True),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
}


class UpdateQuantiles(Optimizer):
    """The Optimizer lens, also asking quantiles of the updates: the kernel can't serve those."""

    def needs(self, kind: str) -> layerscope.lenses.Needs:
        needs = super().needs(kind)
        return layerscope.lenses.Needs(quantiles=True) if kind == "optimizer.update" else needs


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_fused_records_match_the_torch_path_on_real_training(kind):
    # 160 x 128 weights: sampled step sizes; a bias and a head below the sample size.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(160, 128), nn.Tanh(), nn.Linear(128, 3))
    opt = OPTIMIZERS[kind](model.parameters())
    lens = Optimizer(statistics=("mean", "min", "max", "median", "q95"))
    fused = layerscope.watch(model, opt, lenses=[lens])
    torch_path = layerscope.watch(model, opt, lenses=[lens])
    torch_path.force_torch_reducer = True
    fallback = layerscope.watch(model, opt, lenses=[UpdateQuantiles()])
    gatherer = next(g for g in fused._crew.gatherers if isinstance(g, OptimizerGatherer))
    for _ in range(4):
        x, y = torch.randn(64, 160), torch.randint(0, 3, (64,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        # The kernel reads the copies in place; the torch path writes Δw over them.
        assert all(
            torch.equal(s, b) for s, b in zip(gatherer._snapshots.values(), before, strict=True)
        )
    for scope in (fused, torch_path, fallback):
        scope.close()

    def table(scope: layerscope.Scope) -> dict:
        return {(r.step, r.site, r.quantity, r.statistic): r.value for r in scope.records()}

    got, want = table(fused), table(torch_path)
    assert got.keys() == want.keys()
    quantities = {q for (_, _, q, _) in got}
    assert {"update", "update_ratio"} <= quantities
    if kind.startswith("adam"):
        assert {"step_size", "eps_dominance"} <= quantities
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-12), key
    fell_back = table(fallback)
    for key, value in fell_back.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-12), key


def test_host_summary_reaches_other_lenses_whole():
    # A window built from the kernel's summary holds every field a lens may read.
    x = torch.tensor([1.0, -2.0, 0.0, math.nan])
    summary, _, _ = _core.summarize_step(4, to_dlpack(x), to_dlpack(torch.zeros(4)), [], None)[0]
    want = summarize_cpu(x, None, 0.0, None)
    for name in FIELDS:
        assert getattr(summary, name) == pytest.approx(getattr(want, name), nan_ok=True), name
