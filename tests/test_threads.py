"""The engine's threads follow torch's: ``torch.set_num_threads(1)`` keeps every kernel on the
calling thread, results do not depend on the cap, and a bad cap is an error naming it. The
kernels borrow torch's own OpenMP threads (:mod:`layerscope.stats.threads`): they start none of
their own, and give what the engine's own threads give.

Threads are counted where Linux lists them (``/proc/self/task``), polled from a Python thread
while the kernels run with the GIL released.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.dlpack import to_dlpack

import layerscope
from layerscope import _core
from layerscope.gatherers import nonfinite, optimizer
from layerscope.gatherers.nonfinite import nonfinite_count
from layerscope.lenses import Optimizer
from layerscope.stats import summarize, tensors, threads

TASKS = "/proc/self/task"
# Large enough that the kernels split it among threads (from 2^20 elements, two per 2^20).
LARGE = 1 << 22


TEAM = threads.torch_team()
needs_team = pytest.mark.skipif(TEAM is None, reason="torch runs without an OpenMP runtime")


@pytest.fixture
def own_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels as they run without torch's team: on threads they start per call."""
    for module in (tensors, nonfinite, optimizer):
        monkeypatch.setattr(module, "TEAM", None)
    monkeypatch.setattr(threads, "_borrowed", [None])


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _most_threads_while(work: Callable[[], None]) -> tuple[int, int]:
    """The process's threads before `work`, and the most seen while it ran."""
    seen: list[int] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            seen.append(len(os.listdir(TASKS)))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.01)
        before = len(os.listdir(TASKS))  # this thread, the poller and any already running
        work()
    finally:
        done.set()
        poller.join()
    return before, max(seen)


def _threads_started_by(kernel: Callable[[torch.Tensor], object]) -> int:
    """The most threads running at once while `kernel` reads a large tensor 20 times, beyond
    those running before (torch's among them: they start with its first parallel loop)."""
    x = torch.randn(LARGE)
    x.sum()
    before, most = _most_threads_while(lambda: [kernel(x) for _ in range(20)])
    return most - before


needs_proc = pytest.mark.skipif(not os.path.isdir(TASKS), reason="counts threads in /proc")
needs_cores = pytest.mark.skipif(
    _core.build_info()["hardware_threads"] < 2, reason="one hardware thread: nothing to cap"
)


KERNELS = pytest.mark.parametrize(
    "kernel",
    [
        lambda x: tensors.summarize_cpu(x, None, 0.0, None),
        lambda x: tensors.summarize_cpu(x.view(-1, 64), 1, 0.0, 0.0),
        lambda x: tensors.count_exceeding(x, 1.0, absolute=True),
        lambda x: tensors.extremes_and_count_below(x, 0.5),
        lambda x: summarize(x),
        lambda x: nonfinite_count(x.log()),  # NaN in it: the engine counts, not a torch sum
    ],
    ids=[
        "summarize_cpu",
        "summarize_cpu_channels",
        "count_exceeding",
        "extremes",
        "summarize",
        "nonfinite_count",
    ],
)


@needs_proc
@needs_cores
@KERNELS
def test_one_torch_thread_keeps_the_kernels_on_the_callers_thread(one_torch_thread, kernel):
    assert _threads_started_by(kernel) == 0


@needs_proc
@needs_cores
@needs_team
@KERNELS
def test_on_torchs_team_the_kernels_start_no_threads(kernel):
    assert _threads_started_by(kernel) == 0


@needs_proc
@needs_cores
@KERNELS
def test_without_the_team_the_kernels_start_threads(own_threads, kernel):
    # What the test above would see if the kernels did not borrow torch's threads.
    assert _threads_started_by(kernel) > 0


@pytest.mark.parametrize(
    "size", [threads.GRAIN, threads.GRAIN + 1, 3 * threads.GRAIN + 5, 1 << 20, LARGE + 3]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_torchs_team_gives_what_the_engines_own_threads_give(size, dtype):
    g = torch.Generator().manual_seed(size)
    x = (torch.randn(size, generator=g) * 3).to(dtype)
    x[[0, size // 2, size - 1]] = torch.tensor([math.nan, math.inf, -math.inf]).to(dtype)
    rows = x[: size - size % 64].view(-1, 64)

    def both(kernel: Callable[..., Any], *args: object) -> tuple[Any, Any]:
        # A DLPack capsule is read once: fresh ones for each call.
        return kernel(*args, None), kernel(*args, TEAM)

    own, lent = both(lambda team: _core.count_nonfinite(to_dlpack(x), 2, team))
    assert own == lent == 3
    clean = x.nan_to_num(0.0, 0.0, 0.0)
    own, lent = both(lambda team: _core.sum_of_squares(to_dlpack(clean), 2, team))
    assert lent == pytest.approx(own, rel=1e-6)  # float lanes of 16 squares: splits round apart
    assert lent == pytest.approx(float(clean.double().square().sum()), rel=1e-5)
    for axis, eps, threshold in ((None, 0.0, None), (1, 0.5, None), (1, 0.0, 0.0)):
        own, lent = both(
            lambda *args: _core.summarize_site(to_dlpack(rows), *args), axis, eps, threshold, 2
        )
        for name in ("size", "count", "zeros", "nonfinite", "min", "max"):
            assert getattr(own, name) == getattr(lent, name), name
        for name in ("mean", "m2", "l1", "l2"):  # merged in another order: equal to rounding
            assert getattr(lent, name) == pytest.approx(getattr(own, name), rel=1e-12), name
        np.testing.assert_array_equal(own.channel_active, lent.channel_active)


@needs_team
def test_a_second_python_thread_borrows_a_team_of_its_own():
    # OpenMP gives each thread that opens a parallel region a team of its own.
    x = torch.randn(LARGE)
    x[5] = float("nan")
    counts: list[int] = []
    worker = threading.Thread(target=lambda: counts.append(nonfinite_count(x)))
    worker.start()
    worker.join(timeout=60)
    assert counts == [1]
    assert nonfinite_count(x) == 1


MAPPED = "7f0a00000000-7f0a00020000 r-xp 00000000 08:01 42  {}"


@pytest.mark.parametrize(
    ("mapped", "chosen"),
    [
        (["/opt/torch/lib/libgomp.so.1"], "/opt/torch/lib/libgomp.so.1"),
        (["/usr/lib/libiomp5.so"], "/usr/lib/libiomp5.so"),  # the only one is torch's
        (["/usr/lib/libgomp.so.1", "/opt/torch/lib/libgomp-a34b3233.so.1"],
         "/opt/torch/lib/libgomp-a34b3233.so.1"),  # two: the one in torch's folder
        (["/usr/lib/libgomp.so.1", "/usr/lib/libiomp5.so"], None),  # two, neither torch's
        ([], None),
    ],
)  # fmt: skip
def test_torchs_runtime_is_the_one_mapped_or_the_one_in_its_folder(
    tmp_path, monkeypatch, mapped, chosen
):
    maps = tmp_path / "maps"
    lines = [MAPPED.format("/usr/lib/libc.so.6"), *(MAPPED.format(path) for path in mapped)]
    maps.write_text("\n".join([*lines, MAPPED.format("[heap]")]) + "\n")
    monkeypatch.setattr(threads, "MAPS", maps)
    assert threads.torch_runtime(Path("/opt/torch")) == chosen


def test_without_proc_the_engine_looks_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "MAPS", tmp_path / "missing")
    assert threads.torch_runtime(Path("/opt/torch")) == ""


@needs_team
def test_only_a_runtime_already_loaded_is_lent():
    library = threads.torch_runtime(Path(torch.__file__).parent)
    assert library, "torch's OpenMP runtime is mapped into this process"
    assert _core.ThreadTeam.openmp(library) is not None
    assert _core.ThreadTeam.openmp("/nowhere/libgomp.so.1") is None  # and nothing is loaded


def test_the_team_is_declined_through_the_environment(tmp_path):
    code = "import torch; from layerscope.stats import threads; print(threads.torch_team())"
    env = {**os.environ, threads.OPT_OUT: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


@needs_proc
@needs_cores
def test_one_torch_thread_keeps_a_watched_training_step_on_it(one_torch_thread):
    # A 2M-element weight: its gradient, parameter and Adam step are each split when uncapped.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 2048), nn.Tanh(), nn.Linear(2048, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scope = layerscope.watch(model, opt, lenses=[Optimizer(every=1)])

    def step() -> None:
        opt.zero_grad()
        model(torch.randn(8, 1024)).sum().backward()
        opt.step()

    step()  # threads a first step starts for good (if any) are in the count below
    try:
        before, most = _most_threads_while(lambda: [step() for _ in range(3)])
    finally:
        scope.close()
    assert most == before
    assert any(r.quantity == "step_size" for r in scope.records())  # the Adam kernel ran


def test_results_do_not_depend_on_the_cap():
    x = np.random.default_rng(5).standard_normal((LARGE // 8, 8)).astype(np.float32)
    one = summarize(x, channel_axis=1, eps=0.5, max_threads=1)
    many = summarize(x, channel_axis=1, eps=0.5, max_threads=4)
    for name in ("size", "count", "zeros", "nan", "min", "max"):
        assert getattr(one, name) == getattr(many, name), name
    for name in ("channel_active", "channel_count"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
    for name in ("sum", "sum_sq", "m2", "l1"):  # merged in another order: equal to rounding
        assert getattr(one, name) == pytest.approx(getattr(many, name), rel=1e-12), name
    np.testing.assert_allclose(one.channel_sum, many.channel_sum, rtol=1e-12)

    t = torch.from_numpy(x.reshape(-1))
    second = t * t
    half = t * 0.5
    adam = {"correction": 0.1, "eps": 1e-8, "lr": 1e-3, "level": 1e-6, "stride": 1000}
    steps = [
        # A DLPack capsule is read once: fresh ones for each call.
        _core.summarize_step(
            t.numel(), to_dlpack(t), to_dlpack(half), [], to_dlpack(second), **adam, max_threads=n
        )
        for n in (1, 4)
    ]
    (update_1, _, adam_1), (update_4, _, adam_4) = steps
    assert (update_1[0].size, update_1[0].count) == (update_4[0].size, update_4[0].count)
    assert adam_1[3] == adam_4[3]  # v below the level
    assert update_1[1:] == pytest.approx(update_4[1:], rel=1e-12)
    np.testing.assert_array_equal(adam_1[4], adam_4[4])


@pytest.mark.parametrize("threads", [0, -2])
def test_a_cap_below_one_is_a_value_error_naming_it(threads):
    x = np.ones(8, dtype=np.float32)
    with pytest.raises(ValueError, match="summarize: max_threads must be >= 1"):
        summarize(x, max_threads=threads)
    with pytest.raises(ValueError, match="summarize_site: max_threads must be >= 1"):
        _core.summarize_site(x, None, 0.0, None, threads)
    with pytest.raises(ValueError, match="summarize_step: max_threads must be >= 1"):
        _core.summarize_step(8, None, None, [x], None, max_threads=threads)


def test_build_info_reports_the_default_cap():
    # The cap without max_threads: std::thread::hardware_concurrency(), the online CPUs.
    assert _core.build_info()["hardware_threads"] == os.cpu_count()
