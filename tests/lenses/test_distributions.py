"""The Distributions lens: medians, IQRs and histograms of outputs and weight gradients, against
numpy on the tensors captured by the test's hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope
from layerscope import lenses
from models import batches, mlp, record_value, train


def _histogram(x: np.ndarray, edges: np.ndarray) -> tuple[list[int], int, int]:
    """numpy.histogram over `edges` in [lo, hi) bins; under- and overflow."""
    counts, _ = np.histogram(x, bins=edges)
    counts[-1] -= int(np.count_nonzero(x == edges[-1]))
    return counts.tolist(), int((x < edges[0]).sum()), int((x >= edges[-1]).sum())


def test_medians_iqrs_and_histograms_match_numpy():
    model = mlp()
    seen: dict[int, dict[str, np.ndarray]] = {}
    step = {"i": 0}
    for name, module in model.named_children():
        module.register_forward_hook(
            lambda mod, args, out, name=name: seen.setdefault(step["i"], {}).__setitem__(
                f"{name}:output", out.detach().double().numpy().ravel().copy()
            )
        )

    def capture(i, m):
        for name, p in m.named_parameters():
            if name.endswith("weight"):
                site = ":".join(name.rsplit(".", 1)) + ".grad"
                seen[i][site] = p.grad.detach().double().numpy().ravel().copy()
        step["i"] = i + 1

    _, scope = train(
        model,
        batches("mlp", 4),
        after_backward=capture,
        scope_factory=lambda m, o: layerscope.watch(
            m, optimizer=o, lenses=[lenses.Distributions(every=2)]
        ),
    )
    records = scope.records()
    assert sorted({r.step for r in records}) == [0, 2]
    for i in (0, 2):
        assert {r.site for r in records if r.step == i} == set(seen[i])
        for site, x in seen[i].items():
            median = record_value(records, step=i, site=site, statistic="median")
            assert median == pytest.approx(np.quantile(x, 0.5), rel=1e-6, abs=1e-9)
            q25, q75 = np.quantile(x, [0.25, 0.75])
            iqr = record_value(records, step=i, site=site, statistic="iqr")
            assert iqr == pytest.approx(q75 - q25, rel=1e-6, abs=1e-9)
            (h,) = [r.histogram for r in records if (r.step, r.site) == (i, site) and r.histogram]
            counts, underflow, overflow = _histogram(x, np.asarray(h.edges))
            assert (list(h.counts), h.underflow, h.overflow) == (counts, underflow, overflow)
            assert h.total == x.size
    # the default edges: symmetric-log, from -1e4 to 1e4
    assert h.edges[0] == -1e4
    assert h.edges[-1] == 1e4
    assert torch.tensor(h.edges).diff().min() > 0
