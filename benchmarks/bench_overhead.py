"""What layerscope costs a training loop, next to the tools users would pick instead.

    .venv/bin/python benchmarks/bench_overhead.py [--steps N] [--rounds R] [--quick]

For an MLP, a small CNN and a small transformer encoder on the CPU, the same training loop runs
- plain;
- under ``layerscope.watch`` with the default lenses at ``every=1`` and ``every=10``, and at
  ``every=1`` writing a TensorBoard run (``logdir=``);
- under ``wandb.watch(model, log="all", log_freq=1)`` in offline mode (if wandb is installed);
- with TensorBoard ``add_histogram`` over ``named_parameters()`` (values and grads) every step;
- with a hand-written per-layer gradient-norm loop (``p.grad.norm().item()`` per parameter).
Each variant trains its own copy of the model; rounds of steps are interleaved so that a noisy
neighbour slows all variants alike; steps are timed after a few settling steps per switch, and
each ratio is the mean step time over the plain loop's — a mean, so that the steps observing
more (parameters and optimizer state on every 10·every-th step, distributions on every
50·every-th) weigh in their true proportion, as they do in a training run's throughput; each
layerscope variant is timed over at least one whole such cycle.
Then a long run with the default lenses measures how much host memory grows.

The last line holds ``name=value`` pairs: ``every1`` / ``every10`` / ``every1_tensorboard``
(layerscope's worst ratio over the three models), ``wandb``, ``tb_histograms``,
``grad_norm_loop`` (the same, for the others), ``memory_growth_mb`` (RSS growth between step
1,000 and step 10,000: the in-memory record history filling up to its cap) and
``memory_growth_second_half_mb`` (step 5,000 to 10,000).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack

import torch
from torch import nn

import layerscope

Step = Callable[[], None]
#: Steps run, untimed, after switching to another variant: its model is cold in the caches,
#: and after the heavier peers (TensorBoard's histograms) the MLP takes ~10 steps to come back
#: to speed (with 5, the grad-norm loop that follows them read 1.17-1.29 instead of ~1.05).
SETTLE = 20
#: The default lenses' schedule repeats every 50·``every`` steps (distributions); each
#: layerscope variant is timed over at least one whole cycle, so that its periodic steps weigh
#: in their true proportion.
CYCLE = {"every1": 50, "every10": 500, "every1_tensorboard": 50}


def mlp() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    return model, lambda: (torch.randn(128, 784), torch.randint(0, 10, (128,)))


def cnn() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )
    return model, lambda: (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def transformer() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    return Encoder(), lambda: (torch.randn(32, 32, 128), torch.randint(0, 10, (32,)))


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def training_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: tuple, after: Step | None
) -> None:
    x, y = batch
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if after is not None:
        after(loss)


def variants(
    base: nn.Module, stack: ExitStack, logdir: str
) -> dict[str, tuple[nn.Module, torch.optim.Optimizer, Callable | None]]:
    """Each variant: its own model copy, optimizer and a per-step callback."""
    out = {}

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = copy.deepcopy(base)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    model, opt = fresh()
    out["plain"] = (model, opt, None)
    for every in (1, 10):
        model, opt = fresh()
        scope = stack.enter_context(layerscope.watch(model, optimizer=opt, every=every))
        out[f"every{every}"] = (model, opt, lambda loss, scope=scope: scope.step(loss=loss))
    model, opt = fresh()  # the one-liner users write: the records go to TensorBoard too
    scope = stack.enter_context(
        layerscope.watch(model, optimizer=opt, logdir=os.path.join(logdir, "layerscope"))
    )
    out["every1_tensorboard"] = (model, opt, lambda loss, scope=scope: scope.step(loss=loss))
    try:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode="offline", dir=logdir, project="layerscope-bench")
        stack.callback(run.finish)
        model, opt = fresh()
        wandb.watch(model, log="all", log_freq=1)  # the global-run API its users call
        out["wandb"] = (model, opt, lambda loss, run=run: run.log({"loss": loss.item()}))
    except ImportError:
        pass
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(logdir, "tb"))
    stack.callback(writer.close)
    model, opt = fresh()
    counter = {"step": 0}

    def histograms(loss: torch.Tensor, model: nn.Module = model) -> None:
        for name, p in model.named_parameters():
            writer.add_histogram(name, p, counter["step"])
            writer.add_histogram(name + ".grad", p.grad, counter["step"])
        writer.add_scalar("loss", loss.item(), counter["step"])
        counter["step"] += 1

    out["tb_histograms"] = (model, opt, histograms)
    model, opt = fresh()
    norms: list[float] = []

    def grad_norms(loss: torch.Tensor, model: nn.Module = model) -> None:
        norms.extend(p.grad.norm().item() for p in model.parameters())
        del norms[:-1000]

    out["grad_norm_loop"] = (model, opt, grad_norms)
    return out


def measure_model(name: str, steps: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    base, make_batch = MODELS[name]()
    batches = [make_batch() for _ in range(8)]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as logdir, ExitStack() as stack:
        runs = variants(base, stack, logdir)
        for model, opt, after in runs.values():  # warm-up: allocator, thread pools, first flush
            for i in range(12):
                training_step(model, opt, batches[i % len(batches)], after)
        for _ in range(rounds):
            for label, (model, opt, after) in runs.items():
                timed = max(steps, -(-CYCLE.get(label, 1) // rounds))
                for i in range(timed + SETTLE):
                    start = time.perf_counter()
                    training_step(model, opt, batches[i % len(batches)], after)
                    if i >= SETTLE:  # the first steps after a switch refill the caches
                        times.setdefault(label, []).append(time.perf_counter() - start)
    plain = statistics.fmean(times["plain"])
    ratios = {label: statistics.fmean(t) / plain for label, t in times.items()}
    print(
        f"{name:12s} plain {plain * 1e3:7.2f} ms/step  "
        + "  ".join(f"{label} {ratio:.3f}" for label, ratio in ratios.items() if label != "plain")
    )
    return ratios


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_growth(steps: int) -> tuple[float, float]:
    """RSS growth of a long run with the default lenses: from step steps/10 to the end, and
    over the second half alone (where a bounded run has stopped growing)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 32), torch.randint(0, 4, (16,))
    marks = {steps // 10: 0.0, steps // 2: 0.0}
    with layerscope.watch(model, optimizer=opt) as scope:
        for step in range(1, steps + 1):
            training_step(model, opt, (x, y), lambda loss: scope.step(loss=loss))
            if step in marks:
                gc.collect()
                marks[step] = rss_mb()
        gc.collect()
        end = rss_mb()
        kept = len(scope.records())
    early, half = marks[steps // 10], marks[steps // 2]
    print(
        f"memory: RSS {early:.1f} MB at step {steps // 10}, {half:.1f} MB at step {steps // 2}, "
        f"{end:.1f} MB at step {steps}; {kept} records kept in memory"
    )
    return end - early, end - half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--memory-steps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.memory_steps = 2, 2, 200
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {name: measure_model(name, args.steps, args.rounds) for name in MODELS}
    summary = {}
    for label in next(iter(results.values())):
        if label != "plain":
            summary[label] = max(r[label] for r in results.values())
    summary["memory_growth_mb"], summary["memory_growth_second_half_mb"] = memory_growth(
        args.memory_steps
    )
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
