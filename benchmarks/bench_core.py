"""Benchmarks of layerscope's C++ engine, measured side by side with torch in the same run.

    .venv/bin/python benchmarks/bench_core.py

The fused summary of a 64M-element tensor (float32, then bfloat16) against
- the same statistics computed by separate torch ops (mean, var, aminmax, norm, count_nonzero,
  isfinite().sum()): ``vs_torch_ops`` = their time / ours (higher is better, target >= 3);
- a single ``torch.sum`` over the same tensor, a floor set by memory bandwidth:
  ``vs_sum`` = our time / its time (lower is better, target <= 1.5).
Every timing is the best of several interleaved repetitions; torch keeps its default thread
count. Each timed call starts after a short pause: torch's OpenMP workers spin for a few
milliseconds after every parallel op, and without the pause they would hold a core while the
next candidate (whichever it is) runs. The load average is printed with the figures.
The per-channel activity of a conv output (64x16x28x28, channels on axis 1, ``x > 0``) costs
``channel_activity_cost`` = the time of its summary with activity counts / that of the same
summary without channels, back to back on a tensor in the caches (lower is better, target <=
1.25: the counts are taken while each block of the whole-buffer pass is in L1, not by a second
read of the tensor). ``unit_activity_cost`` is the same for a Linear output with its units
innermost (4096 tokens x 768 units; target <= 1.35). ``norms_only_cost_<shape>`` = the time
of a norms-only summary (the sum of squares a parameter gradient is read for when its lenses
read only its norm) / that of its full summary, back to back on a GPT-2-small-shaped gradient
in the caches (lower is better).
If benchmarks/sketch_benchmark.py exists its figures are merged in. The last line holds
every figure as ``name=value`` pairs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from layerscope import stats
from layerscope.stats.tensors import summarize_cpu, summarize_norms_cpu

N = 64 * 1024 * 1024
REPEATS = 7
SETTLE_S = 0.05  # lets torch's spinning OpenMP workers go idle between timed calls


def torch_ops(x: torch.Tensor) -> tuple:
    """The statistics of a Summary, one torch reduction each."""
    return (
        x.mean(),
        x.var(),
        torch.aminmax(x),
        x.norm(),
        torch.count_nonzero(x),
        torch.isfinite(x).sum(),
    )


def fused(x: torch.Tensor) -> stats.Summary:
    return stats.summarize(x)


def torch_sum(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(x)


def time_side_by_side(
    candidates: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor
) -> dict[str, tuple[float, float]]:
    """Best and median seconds of each candidate, repetitions interleaved so that a noisy
    neighbour slows them all alike."""
    for fn in candidates.values():  # warm-up: page faults, thread pools
        fn(x)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(REPEATS):
        for name, fn in candidates.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def bench_dtype(dtype: torch.dtype, prefix: str) -> dict[str, float]:
    x = torch.randn(N, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = time_side_by_side({"fused": fused, "ops": torch_ops, "sum": torch_sum}, x)
    for name, (best, median) in t.items():
        print(f"{prefix or 'f32_'}{name}: best {best * 1e3:8.2f} ms, median {median * 1e3:8.2f} ms")
    return {
        f"{prefix}vs_torch_ops": t["ops"][0] / t["fused"][0],
        f"{prefix}vs_sum": t["fused"][0] / t["sum"][0],
        f"{prefix or 'f32_'}fused_ms": t["fused"][0] * 1e3,
        f"{prefix or 'f32_'}sum_ms": t["sum"][0] * 1e3,
    }


def time_hot(
    candidates: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, repeats: int = 300
) -> dict[str, tuple[float, float]]:
    """Best and median seconds of each candidate over back-to-back calls, interleaved: the
    tensor stays in the caches, as an output does in the forward hook that reads it."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for i in range(repeats + 20):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn(x)
            if i >= 20:  # warm-up
                times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def activity_cost(x: torch.Tensor, channel_axis: int, label: str) -> float:
    """Time of `x`'s summary with per-channel activity counts over that of its plain summary."""
    t = time_hot(
        {
            "whole": lambda x: stats.summarize(x, threshold=0.0),
            "channels": lambda x: stats.summarize(
                x, channel_axis=channel_axis, threshold=0.0, channel_sums=False
            ),
        },
        x,
    )
    for name, (best, median) in t.items():
        print(f"{label}_{name}: best {best * 1e6:8.1f} us, median {median * 1e6:8.1f} us")
    return t["channels"][0] / t["whole"][0]


def bench_channel_activity() -> dict[str, float]:
    seeded = torch.Generator().manual_seed(0)
    conv = torch.randn(64, 16, 28, 28, generator=seeded).relu_()
    linear = torch.randn(4096, 768, generator=seeded)
    return {
        "channel_activity_cost": activity_cost(conv, 1, "conv"),
        "unit_activity_cost": activity_cost(linear, -1, "linear"),
    }


def bench_norms_only() -> dict[str, float]:
    seeded = torch.Generator().manual_seed(0)
    out = {}
    for rows, cols in ((768, 768), (3072, 768)):
        grad = torch.randn(rows, cols, generator=seeded) * 1e-3
        label = f"norms_{rows}x{cols}"
        t = time_hot(
            {"full": lambda x: summarize_cpu(x, None, 0.0, None), "norms": summarize_norms_cpu},
            grad,
        )
        for name, (best, median) in t.items():
            print(f"{label}_{name}: best {best * 1e6:8.1f} us, median {median * 1e6:8.1f} us")
        out[f"norms_only_cost_{rows}x{cols}"] = t["norms"][0] / t["full"][0]
    return out


def main() -> None:
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {N} elements, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = {"load_avg_1min": os.getloadavg()[0]}
    results.update(bench_dtype(torch.float32, ""))
    results.update(bench_dtype(torch.bfloat16, "bf16_"))
    results.update(bench_channel_activity())
    results.update(bench_norms_only())
    here = Path(__file__).resolve().parent
    if (here / "sketch_benchmark.py").exists():
        sys.path.insert(0, str(here))
        from sketch_benchmark import run as run_sketch

        results.update(run_sketch())
    print(" ".join(f"{name}={value:.4g}" for name, value in results.items()))


if __name__ == "__main__":
    main()
