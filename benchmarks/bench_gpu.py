"""What layerscope costs a model big enough to matter, on a GPU: ~100M parameters, bf16 autocast.

    .venv/bin/python benchmarks/bench_gpu.py [--steps N] [--rounds R] [--tiny]

A transformer encoder (d_model 768, 14 layers, ~100M parameters) trains under
``torch.autocast(bfloat16)`` with AdamW, plain and under ``layerscope.watch`` with the default
lenses at ``every=1`` and ``every=10``, in interleaved rounds; each ratio is the round-summed
wall time over the plain loop's, the device synchronised at the end of each round only. Then
50 steps at ``every=1`` run under ``torch.cuda.set_sync_debug_mode("error")``: any host-device
synchronisation between flushes raises.

Without CUDA it says so and exits; ``--tiny --device cpu`` runs a small model on the CPU, to
check the script itself. The last line holds ``every1=``, ``every10=`` and ``syncs=`` (0 when
the checked steps made none).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import layerscope


class Encoder(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, width // 64, 4 * width, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def step(model: nn.Module, opt: torch.optim.Optimizer, x, y, after: Callable | None) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if after is not None:
        after(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tiny", action="store_true", help="a small model: checks the script")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (try --tiny --device cpu to check the script)")
        sys.exit(0)
    width, depth, batch, seq = (64, 2, 4, 16) if args.tiny else (768, 14, 16, 256)
    torch.manual_seed(0)
    x = torch.randn(batch, seq, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model = Encoder(width, depth).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} on {device}, {size / 1e6:.1f}M parameters, bf16 autocast")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # One model and optimizer for every variant: a scope is attached for its turn and its
    # state carried to the next (state_dict), so that its schedule runs on as in one run.
    states: dict[str, dict | None] = {"every1": None, "every10": None}
    totals = {"plain": 0.0, "every1": 0.0, "every10": 0.0}
    for _ in range(args.rounds):
        for label in totals:
            scope = None
            if label != "plain":
                scope = layerscope.watch(model, optimizer=opt, every=int(label[5:]))
                if states[label] is not None:
                    scope.load_state_dict(states[label])
            after = None if scope is None else scope.step
            for _ in range(3):  # settle: allocator, the first observed step
                step(model, opt, x, y, after)
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, opt, x, y, after)
            sync()
            totals[label] += time.perf_counter() - start
            if scope is not None:
                states[label] = scope.state_dict()
                scope.close()
    ratios = {label: totals[label] / totals["plain"] for label in ("every1", "every10")}
    plain = totals["plain"] / (args.rounds * args.steps)
    shown = "  ".join(f"{label} {ratio:.3f}" for label, ratio in ratios.items())
    print(f"plain {plain * 1e3:.2f} ms/step  {shown}")

    syncs = 0
    scope = layerscope.watch(model, optimizer=opt, flush_every=1000)
    if device.type == "cuda":
        sync()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(50):
            step(model, opt, x, y, scope.step)
    except RuntimeError as error:  # the first synchronisation, with its stack
        syncs = 1
        print(f"a host-device synchronisation between flushes: {error}")
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    scope.close()
    print(f"every1={ratios['every1']:.3f} every10={ratios['every10']:.3f} syncs={syncs}")


if __name__ == "__main__":
    main()
