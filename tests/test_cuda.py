"""On CUDA, layerscope makes no host-device synchronisation between flushes (needs a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _model() -> nn.Module:
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    return nn.Sequential(
        nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
        nn.Flatten(),
        nn.Linear(64 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ).cuda()


def test_fifty_steps_without_a_sync_between_flushes():
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(16, 8, 64, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    scope = layerscope.watch(model, optimizer=opt, flush_every=1000)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(50):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    scope.close()  # the flush: one device-to-host copy
    records = scope.records()
    assert {r.step for r in records} == set(range(50))
    assert any(r.site == "2:weight.grad" and r.quantity == "l2" for r in records)


def test_cuda_records_match_cpu_records():
    torch.manual_seed(0)
    cpu_model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    gpu_model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.cuda()
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    results = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with layerscope.watch(model, optimizer=opt) as scope:
            for _ in range(3):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
                loss.backward()
                opt.step()
                scope.step(loss=loss)
        results.append(
            {
                (r.step, r.site, r.quantity, r.statistic): r.value
                for r in scope.records()
                if r.histogram is None
            }
        )
    cpu, gpu = results
    assert cpu.keys() == gpu.keys()
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
