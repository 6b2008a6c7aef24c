"""What layerscope costs a training loop, next to the tools users would pick instead.

    .venv/bin/python benchmarks/bench_overhead.py [--steps N] [--rounds R] [--quick]

For an MLP, a small CNN and a small transformer encoder on the CPU, the same training loop runs
- plain;
- under ``layerscope.watch`` with the default lenses at ``every=1`` and ``every=10``, and at
  ``every=1`` writing a TensorBoard run (``logdir=``);
- under ``layerscope.watch`` on steps that no lens but the NaN search observes (``idle``: the
  nine steps in ten between ``every=10``'s observations, which pay the step clock's hooks and the
  search for NaN and Inf in every output, output gradient and parameter gradient);
- under ``wandb.watch(model, log="all", log_freq=1)`` in offline mode (if wandb is installed);
- with TensorBoard ``add_histogram`` over ``named_parameters()`` (values and grads) every step;
- with a hand-written per-layer gradient-norm loop (``p.grad.norm().item()`` per parameter).
The variants take turns on one model and optimizer (wandb, whose hooks stay on, trains a copy),
attached and detached round by round (layerscope's scopes carry their state across, so their
schedules run on); rounds of steps are interleaved, each round in another order, so that a noisy
neighbour or a heavy predecessor slows all variants alike; steps are timed after a few settling
steps per switch, and each ratio is the mean step time over the plain loop's (in brackets the
lowest and highest of the rounds' own ratios, the spread noise leaves) — a mean, so that the
steps observing more (parameters and optimizer state on every 10·every-th step, distributions on
every 50·every-th) weigh in their true proportion, as they do in a training run's throughput; each
layerscope variant is timed over at least one whole such cycle.
Then, per model, layerscope's own time in an ordinary observed step (``every=1``, a step that
observes neither parameters nor distributions: the median observed step less the median plain
one) next to the time of its kernels alone: the same reductions (the fused summaries and the
finiteness sums) run in isolation on copies of the tensors that step reduced, and what the
same kernels add when they run inside plain training steps (the step's data and theirs push
each other out of the caches): the floor of reading the data once. A GPT-2-small-shaped
transformer (12 layers, 768 wide, 12 heads, from a config, no download) runs a few steps
plain, at ``every=1`` and at ``every=10`` (ten steps a round: one observed, nine idle), where a
user would feel the cost.
Then a long run with the default lenses, in a process of its own, measures how much host memory
grows. The timings run with glibc's allocator thresholds fixed (:func:`steady_allocator`); the
memory run with the allocator as a user's process has it.

The last line holds ``name=value`` pairs: ``every1`` / ``every10`` / ``every1_tensorboard`` /
``idle`` (layerscope's worst ratio over the three models; ``every10`` is about nine tenths of
``idle`` and a tenth of an observed step), ``own_vs_kernels`` (the worst ratio of
layerscope's own time to its kernels' alone), ``own_vs_kernels_in_step`` (to what its kernels
add inside plain steps), ``gpt2_every1`` / ``gpt2_every10``, ``wandb``,
``tb_histograms``,
``grad_norm_loop`` (the same, for the others), ``memory_growth_mb`` (RSS growth between step
1,000 and step 10,000: the in-memory record history filling up to its cap) and
``memory_growth_second_half_mb`` (step 5,000 to 10,000).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import torch
from torch import nn

import layerscope

Step = Callable[[], None]
#: Steps run, untimed, after switching to another variant: what it adds is cold in the caches,
#: and after the heavier peers (TensorBoard's histograms) the MLP takes ~10 steps to come back
#: to speed (with 5, the grad-norm loop that follows them read 1.17-1.29 instead of ~1.05).
SETTLE = 20
#: The default lenses' schedule repeats every 50·``every`` steps (distributions); each
#: layerscope variant is timed over at least one whole cycle, so that its periodic steps weigh
#: in their true proportion.
CYCLE = {"every1": 50, "every10": 500, "every1_tensorboard": 50}
#: ``every`` of the idle variant: no lens but the NaN search (and Health, which reads it)
#: observes a step after the first, which the warm-up runs.
IDLE_EVERY = 10**9


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


class Variant:
    """One way of running the training loop: a model, its optimizer and what runs each step.

    :meth:`start` attaches whatever the variant adds and returns the per-step callback;
    :meth:`stop` detaches it, so that several variants can take turns on one model.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, after: Step | None) -> None:
        self.model, self.opt, self.after = model, opt, after

    def start(self) -> Step | None:
        return self.after

    def stop(self) -> None:
        pass


class Watched(Variant):
    """The model under ``layerscope.watch`` for each of its rounds.

    Between rounds the scope is closed and its state (step count, lens state) kept, and the
    next round's scope resumes from it: the schedules run on as in one unbroken run.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, **options: object) -> None:
        super().__init__(model, opt, None)
        self.options = options
        self.state: dict | None = None
        self.scope: layerscope.Scope | None = None

    def start(self) -> Step:
        scope = self.scope = layerscope.watch(self.model, optimizer=self.opt, **self.options)
        if self.state is not None:
            scope.load_state_dict(self.state)
        return lambda loss: scope.step(loss=loss)

    def stop(self) -> None:
        if self.scope is not None:
            self.state = self.scope.state_dict()
            self.scope.close()
            self.scope = None


def variants(base: nn.Module, stack: ExitStack, logdir: str) -> dict[str, Variant]:
    """Every variant by label (each round runs them in an order of its own).

    The plain loop, layerscope's variants and the callback-only peers take turns on one model
    and optimizer: identical loops on two copies of a model differ by up to 4-8% in one run
    (where their tensors landed in memory), more than the differences measured here.
    wandb, whose hooks stay on the model it watches, trains a copy of its own.
    """
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out: dict[str, Variant] = {"plain": Variant(model, opt, None)}
    for every in (1, 10):
        out[f"every{every}"] = Watched(model, opt, every=every)
    out["idle"] = Watched(model, opt, every=IDLE_EVERY)
    # the one-liner users write: the records go to TensorBoard too
    out["every1_tensorboard"] = Watched(model, opt, logdir=os.path.join(logdir, "layerscope"))
    try:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode="offline", dir=logdir, project="layerscope-bench")
        stack.callback(run.finish)
        copied = copy.deepcopy(base)
        wandb.watch(copied, log="all", log_freq=1)  # the global-run API its users call
        out["wandb"] = Variant(
            copied,
            torch.optim.Adam(copied.parameters(), lr=1e-3),
            lambda loss, run=run: run.log({"loss": loss.item()}),
        )
    except ImportError:
        pass
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(logdir, "tb"))
    stack.callback(writer.close)
    counter = {"step": 0}

    def histograms(loss: torch.Tensor) -> None:
        for name, p in model.named_parameters():
            writer.add_histogram(name, p, counter["step"])
            writer.add_histogram(name + ".grad", p.grad, counter["step"])
        writer.add_scalar("loss", loss.item(), counter["step"])
        counter["step"] += 1

    out["tb_histograms"] = Variant(model, opt, histograms)
    norms: list[float] = []

    def grad_norms(loss: torch.Tensor) -> None:
        norms.extend(p.grad.norm().item() for p in model.parameters())
        del norms[:-1000]

    out["grad_norm_loop"] = Variant(model, opt, grad_norms)
    return out


def interleaved_rounds(
    runs: dict[str, Variant],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    rounds: int,
    timed: Callable[[str], int],
    warm_up: int,
    settle: int,
) -> dict[str, list[list[float]]]:
    """Step times of each variant, round by round: `timed(label)` timed steps a round.

    Each variant first runs `warm_up` steps (allocator, thread pools, first flush); each round
    then runs the variants in another order, each `settle` untimed steps after its switch (what
    it adds is cold in the caches) and then its timed steps.
    """
    for variant in runs.values():
        after = variant.start()
        for i in range(warm_up):
            training_step(variant.model, variant.opt, batches[i % len(batches)], after)
        variant.stop()
    times: dict[str, list[list[float]]] = {label: [] for label in runs}
    for round_ in range(rounds):
        # Each round in another order: a variant runs slower right after a heavy one (the
        # grad-norm loop read 1.06-1.10 after TensorBoard's histograms, 1.02 after the plain
        # loop), and shuffling spreads that over all of them alike.
        order = list(runs.items())
        random.Random(round_).shuffle(order)
        for label, variant in order:
            after = variant.start()
            this_round: list[float] = []
            for i in range(settle + timed(label)):
                start = time.perf_counter()
                training_step(variant.model, variant.opt, batches[i % len(batches)], after)
                if i >= settle:
                    this_round.append(time.perf_counter() - start)
            variant.stop()
            times[label].append(this_round)
    return times


def measure_model(name: str, steps: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    base, make_batch = MODELS[name]()
    batches = [make_batch() for _ in range(8)]
    with tempfile.TemporaryDirectory() as logdir, ExitStack() as stack:
        runs = variants(base, stack, logdir)
        times = interleaved_rounds(
            runs,
            batches,
            rounds,
            lambda label: max(steps, -(-CYCLE.get(label, 1) // rounds)),
            warm_up=12,
            settle=SETTLE,
        )
    return report_ratios(name, list(runs), times)


#: Steps of one block of :func:`blocks_in_turns`.
BLOCK = 10


def blocks_in_turns(steps: int) -> Iterator[tuple[bool, bool]]:
    """``(on, counted)`` for each block of :data:`BLOCK` steps: off and on in turns.

    Enough blocks for at least `steps` counted steps each way; the first two only settle.
    """
    for block in range(2 * -(-steps // BLOCK) + 2):
        yield bool(block % 2), block >= 2


def own_time(name: str, steps: int) -> tuple[float, float]:
    """Layerscope's own time per ordinary observed step over its kernels' time; printed.

    Over the kernels alone, and over what they add inside plain steps
    (:func:`kernels_inside_steps`).
    """
    import layerscope.gatherers.nonfinite as finite
    import layerscope.reduce.windows as windows

    torch.manual_seed(0)
    model, make_batch = MODELS[name]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [make_batch() for _ in range(8)]
    plain: list[float] = []
    observed: list[float] = []
    watched = Watched(model, opt)
    for on, counted in blocks_in_turns(steps):
        after = watched.start() if on else None
        for i in range(BLOCK):
            scope = watched.scope
            ordinary = scope is not None and scope.step_count % 10 not in (0, 9)
            start = time.perf_counter()
            training_step(model, opt, batches[i % len(batches)], after)
            elapsed = time.perf_counter() - start
            if counted and (scope is None or ordinary):  # no parameters, nor distributions
                (observed if scope is not None else plain).append(elapsed)
        watched.stop()
    scope = layerscope.watch(model, optimizer=opt)
    scope.load_state_dict(watched.state)
    after = lambda loss: scope.step(loss=loss)  # noqa: E731
    # The reductions of one ordinary step, on copies of its tensors.
    calls: list[tuple[Callable[..., object], tuple]] = []
    kernels = {
        (windows, "summarize_cpu"): windows.summarize_cpu,
        (windows, "summarize_norms_cpu"): windows.summarize_norms_cpu,
        (finite, "nonfinite_count"): finite.nonfinite_count,
    }

    def kept(kernel: Callable[..., object]) -> Callable[..., object]:
        def call(tensor: torch.Tensor, *args: object) -> object:
            calls.append((kernel, (tensor.detach().clone(), *args)))
            return kernel(tensor, *args)

        return call

    while scope.step_count % 10 in (0, 9):
        training_step(model, opt, batches[0], after)
    for (module, attribute), kernel in kernels.items():
        setattr(module, attribute, kept(kernel))
    try:
        training_step(model, opt, batches[0], after)
    finally:
        for (module, attribute), kernel in kernels.items():
            setattr(module, attribute, kernel)
    scope.close()

    def replay() -> None:
        for call, args in calls:
            call(*args)

    kernel_times = []
    for _ in range(max(steps, 5)):
        start = time.perf_counter()
        replay()
        kernel_times.append(time.perf_counter() - start)
    in_step = kernels_inside_steps(model, opt, batches, replay, steps)
    own = statistics.median(observed) - statistics.median(plain)
    alone = statistics.median(kernel_times)
    print(
        f"{name:12s} own time {own * 1e3:6.3f} ms per observed step, its kernels alone "
        f"{alone * 1e3:6.3f} ms ({len(calls)} tensors): {own / alone:.2f}x; the same "
        f"kernels inside plain steps add {in_step * 1e3:6.3f} ms: {own / in_step:.2f}x"
    )
    return own / alone, own / in_step


def kernels_inside_steps(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    replay: Callable[[], None],
    steps: int,
) -> float:
    """What `replay` adds to a plain step when it runs inside it (at the optimizer step).

    Inside a training step the kernels read data the step has pushed out of the caches, and
    the step's own operations then find theirs pushed out: the floor of reading the data
    once, as a training run pays it, without any of layerscope's bookkeeping.
    """
    times: dict[bool, list[float]] = {False: [], True: []}
    for with_kernels, counted in blocks_in_turns(steps):
        handle = opt.register_step_pre_hook(lambda *_: replay()) if with_kernels else None
        for i in range(BLOCK):
            start = time.perf_counter()
            training_step(model, opt, batches[i % len(batches)], None)
            if counted:
                times[with_kernels].append(time.perf_counter() - start)
        if handle is not None:
            handle.remove()
    return statistics.median(times[True]) - statistics.median(times[False])


class LanguageModel(nn.Module):
    """A GPT-2-small-shaped GPT2LMHeadModel from a config; logits as (tokens, vocabulary)."""

    def __init__(self) -> None:
        super().__init__()
        import transformers

        config = transformers.GPT2Config(
            n_layer=12,
            n_embd=768,
            n_head=12,
            vocab_size=8192,  # GPT-2's 50257 would make the head most of the step
            n_positions=128,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        self.lm = transformers.GPT2LMHeadModel(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(ids).logits.flatten(0, 1)


def measure_gpt2(steps: int, rounds: int) -> dict[str, float]:
    """Plain, every=1 and every=10 on the GPT-2-small-shaped model, in interleaved rounds."""
    torch.manual_seed(0)
    model = LanguageModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = [(torch.randint(0, 8192, (2, 64)), torch.randint(0, 8192, (128,))) for _ in range(2)]
    runs: dict[str, Variant] = {"plain": Variant(model, opt, None)}
    for every in (1, 10):
        runs[f"every{every}"] = Watched(model, opt, every=every)
    # every=10: whole periods of ten steps, one observed and nine idle
    times = interleaved_rounds(
        runs,
        batches,
        rounds,
        lambda label: -(-steps // 10) * 10 if label == "every10" else steps,
        warm_up=1,
        settle=1,
    )
    ratios = report_ratios("gpt2-small", list(runs), times)
    return {f"gpt2_{label}": ratio for label, ratio in ratios.items() if label != "plain"}


def report_ratios(
    name: str, labels: list[str], times: dict[str, list[list[float]]]
) -> dict[str, float]:
    """Print and return each variant's mean step time over the plain loop's, in `labels` order.

    Each ratio is followed by the lowest and the highest of the rounds' own ratios (a round's
    mean over that round's plain mean): the spread that noise on the machine leaves.
    """
    plain = statistics.fmean(t for round_ in times["plain"] for t in round_)
    ratios = {
        label: statistics.fmean(t for round_ in times[label] for t in round_) / plain
        for label in labels
    }

    def shown(label: str) -> str:
        per_round = [
            statistics.fmean(mine) / statistics.fmean(base)
            for mine, base in zip(times[label], times["plain"], strict=True)
        ]
        return f"{label} {ratios[label]:.3f} [{min(per_round):.2f}-{max(per_round):.2f}]"

    print(
        f"{name:12s} plain {plain * 1e3:7.2f} ms/step  "
        + "  ".join(shown(label) for label in labels if label != "plain")
    )
    return ratios


def steady_allocator() -> str:
    """Fix glibc's thresholds for mmap and for trimming the heap; say what was done.

    By default glibc moves both as blocks come and go, so a step's large temporaries (Adam's,
    ~1.6 MB on the MLP) are served from fresh pages in some stretches of a run and from reused
    heap in others: the same plain MLP step took 2.7 ms in one run and 4.0 ms (760 page faults
    a step) in the next, and every ratio moved with it. Both loops fault alike, so fixing the
    thresholds changes no variant's own cost; it keeps the denominator from drifting.
    """
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    try:
        libc = ctypes.CDLL("libc.so.6")
        fixed = libc.mallopt(m_mmap_threshold, 64 << 20) and libc.mallopt(
            m_trim_threshold, 256 << 20
        )
    except (OSError, AttributeError):
        fixed = False
    return "glibc thresholds fixed (mmap 64 MB, trim 256 MB)" if fixed else "allocator as is"


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


def memory_growth_apart(steps: int) -> tuple[float, float]:
    """:func:`memory_growth` in a fresh process: in this one, the memory the models before it
    freed would be reused and hide the growth."""
    done = subprocess.run(
        [sys.executable, __file__, "--memory-only", "--memory-steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    *lines, figures = done.stdout.strip().splitlines()
    print(*lines, sep="\n")
    growth, second_half = map(float, figures.split())
    return growth, second_half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--memory-steps", type=int, default=10_000)
    parser.add_argument("--gpt2-steps", type=int, default=10, help="timed GPT-2 steps per round")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:  # the memory line's own process (see memory_growth_apart)
        print(*memory_growth(args.memory_steps))
        return
    # Each variant attaches a scope every round: its attach line and findings would bury the
    # figures (and writing them is not what is measured).
    logging.getLogger("layerscope").setLevel(logging.WARNING)
    if args.quick:
        args.steps, args.rounds, args.memory_steps, args.gpt2_steps = 2, 2, 200, 2
    allocator = steady_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {allocator}")
    results = {name: measure_model(name, args.steps, args.rounds) for name in MODELS}
    summary = {}
    for label in next(iter(results.values())):
        if label != "plain":
            summary[label] = max(r[label] for r in results.values())
    own = [own_time(name, 10 * args.steps) for name in MODELS]
    summary["own_vs_kernels"] = max(alone for alone, _ in own)
    summary["own_vs_kernels_in_step"] = max(in_step for _, in_step in own)
    summary.update(measure_gpt2(args.gpt2_steps, max(1, args.rounds // 3)))
    summary["memory_growth_mb"], summary["memory_growth_second_half_mb"] = memory_growth_apart(
        args.memory_steps
    )
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
