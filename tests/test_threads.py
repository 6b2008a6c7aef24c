"""The engine's threads follow torch's: ``torch.set_num_threads(1)`` keeps every kernel on the
calling thread, results do not depend on the cap, and a bad cap is an error naming it.

Threads are counted where Linux lists them (``/proc/self/task``), polled from a Python thread
while the kernels run with the GIL released.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.dlpack import to_dlpack

import layerscope
from layerscope import _core
from layerscope.gatherers.nonfinite import nonfinite_count
from layerscope.lenses import Optimizer
from layerscope.stats import summarize, tensors

TASKS = "/proc/self/task"
# Large enough that the kernels split it among threads (from 2^20 elements, two per 2^20).
LARGE = 1 << 22


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


needs_proc = pytest.mark.skipif(not os.path.isdir(TASKS), reason="counts threads in /proc")
needs_cores = pytest.mark.skipif(
    _core.build_info()["hardware_threads"] < 2, reason="one hardware thread: nothing to cap"
)


@needs_proc
@needs_cores
@pytest.mark.parametrize(
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
def test_one_torch_thread_keeps_the_kernels_on_the_callers_thread(one_torch_thread, kernel):
    x = torch.randn(LARGE)

    def work() -> None:
        for _ in range(20):
            kernel(x)

    before, most = _most_threads_while(work)
    assert most == before


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
