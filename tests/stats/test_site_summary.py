"""SiteSummary: one type for the CPU path, the device path and host numbers, merged exactly."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from layerscope import _core
from layerscope.stats import SiteSummary, summarize
from layerscope.stats.tensors import (
    combine,
    device_tensors,
    fetch,
    summarize_cpu,
    summarize_torch,
    unpack,
)
from oracle import summary_oracle

RNG = np.random.default_rng(11)
COUNTS = ("size", "count", "zeros", "nonfinite")


def assert_fields(got: SiteSummary, want: dict, rel: float = 1e-6) -> None:
    for name in SiteSummary.fields:
        value = getattr(got, name)
        if name in COUNTS:
            assert value == want[name], name
        elif math.isnan(want[name]):
            assert math.isnan(value), name
        else:
            scale = want["l1"] / max(want["count"], 1) if name == "mean" else 0.0
            assert value == pytest.approx(want[name], rel=rel, abs=rel * scale + 1e-12), name
    if want.get("channel_active") is not None:
        np.testing.assert_array_equal(got.channel_active, want["channel_active"])
    else:
        assert got.channel_active is None


def hostile(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Offset normal data with zeros, NaN and ±Inf sprinkled in."""
    gen = np.random.default_rng(seed)
    x = (gen.standard_normal(shape) * 3 + 50).astype(np.float32)
    flat = x.reshape(-1)
    if flat.size > 10:
        flat[::7] = 0.0
        flat[3], flat[5], flat[9] = np.nan, np.inf, -np.inf
    return x


def test_fields_are_the_attributes_and_the_packed_layout():
    assert SiteSummary.fields == (
        "size", "count", "mean", "m2", "min", "max", "l1", "l2", "zeros", "nonfinite",
    )  # fmt: skip
    s = SiteSummary(size=3, count=2, mean=1.5, m2=0.5, min=1.0, max=2.0, l1=3.0, l2=5**0.5,
                    zeros=0, nonfinite=1)  # fmt: skip
    packed = np.array([getattr(s, name) for name in SiteSummary.fields], dtype=np.float64)
    back = SiteSummary.from_packed(packed)
    assert [getattr(back, n) for n in s.fields] == [getattr(s, n) for n in s.fields]
    with pytest.raises(TypeError):
        SiteSummary(3, 2)  # named fields only: no positional layout to get wrong


@pytest.mark.parametrize("axis", [None, 1])
def test_summarize_site_is_the_oracle(axis):
    x = hostile((40, 9), 1)
    assert_fields(
        summarize_cpu(torch.from_numpy(x), axis, 0.5, None), summary_oracle(x, axis, eps=0.5)
    )
    s = summarize(x, channel_axis=axis, eps=0.5, channel_sums=False)
    site = _core.summarize_site(x, axis, 0.5, None)
    for name in ("size", "count", "mean", "m2", "min", "max", "l1", "l2", "zeros", "nonfinite"):
        assert getattr(site, name) == getattr(s, name), name


@pytest.mark.parametrize(
    "shape", [(0,), (1,), (5,), (64, 33), (3, 4, 5)], ids=lambda s: "x".join(map(str, s))
)
@pytest.mark.parametrize("axis", [None, -1])
@pytest.mark.parametrize("kind", ["finite", "hostile", "all_nan"])
@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ),
    ],
)
def test_device_path_gives_every_field_of_the_cpu_path(shape, axis, kind, device):
    x = np.full(shape, np.nan, np.float32) if kind == "all_nan" else hostile(shape, 2)
    if kind == "finite":
        x = np.nan_to_num(x, posinf=1.0, neginf=-1.0, nan=2.0)
    tensor = torch.from_numpy(x)
    cpu = summarize_cpu(tensor, axis, 0.0, None)
    on_device = summarize_torch(tensor.to(device), axis, 0.0, None)
    got = unpack(on_device, iter(fetch(device_tensors(on_device))))
    for name in SiteSummary.fields:
        a, b = getattr(cpu, name), getattr(got, name)
        if name in COUNTS or math.isnan(a):
            assert (math.isnan(a) and math.isnan(b)) or a == b, name
        else:
            assert b == pytest.approx(a, rel=1e-6, abs=1e-6), name
    if axis is None:
        assert got.channel_active is None
    else:
        np.testing.assert_array_equal(got.channel_active, cpu.channel_active)


@pytest.mark.parametrize("seed", range(4))
def test_merge_of_splits_is_the_summary_of_the_whole(seed):
    gen = np.random.default_rng(seed)
    x = hostile((int(gen.integers(20, 200)), 6), seed).astype(np.float64)  # summed in double
    x[gen.integers(0, len(x)) :] += 1e3  # parts with very different means
    cuts = sorted(gen.integers(0, len(x), size=3))
    parts = np.split(x, cuts)  # empty parts included
    summaries = [summarize_cpu(torch.from_numpy(p), 1, 0.0, None) for p in parts]
    want = summary_oracle(x, 1)
    assert_fields(combine(summaries), want, rel=1e-9)
    left = summaries[0]
    for s in summaries[1:]:
        left = left.merge(s)
    right = summaries[-1]
    for s in reversed(summaries[:-1]):
        right = s.merge(right)
    for name in SiteSummary.fields:
        a, b = getattr(left, name), getattr(right, name)
        assert (math.isnan(a) and math.isnan(b)) or b == pytest.approx(a, rel=1e-12), name


def test_empty_is_the_identity_and_all_nan_parts_add_counts_only():
    s = summarize_cpu(torch.from_numpy(hostile((30, 4), 3)), 1, 0.0, None)
    nan = summarize_cpu(torch.full((5, 4), math.nan), 1, 0.0, None)
    for merged in (SiteSummary().merge(s), s.merge(SiteSummary()), s.merge(nan)):
        for name in ("count", "mean", "m2", "min", "max", "l1", "l2", "zeros"):
            assert getattr(merged, name) == getattr(s, name), name
    assert s.merge(nan).nonfinite == s.nonfinite + 20
    assert s.merge(nan).size == s.size + 20
    empty = SiteSummary.merge_all([])
    assert (empty.size, empty.count, empty.m2) == (0, 0, 0.0)
    assert math.isnan(empty.mean)


def test_pickles_whole_and_stays_read_only():
    s = summarize_cpu(torch.from_numpy(hostile((10, 3), 4)), 1, 0.0, None)
    back = pickle.loads(pickle.dumps(s))
    for name in (*SiteSummary.fields, "variance"):
        a, b = getattr(s, name), getattr(back, name)
        assert (math.isnan(a) and math.isnan(b)) or a == b, name
    np.testing.assert_array_equal(back.channel_active, s.channel_active)
    assert pickle.loads(pickle.dumps(SiteSummary())).channel_active is None
    with pytest.raises(ValueError, match="read-only"):
        s.channel_active[0] = 5
    with pytest.raises(AttributeError):
        s.mean = 0.0


def test_merge_all_refuses_none_by_position():
    s = SiteSummary(size=1, count=1, mean=2.0, min=2.0, max=2.0, l1=2.0, l2=2.0)
    with pytest.raises(TypeError, match=r"merge_all: element 1 is None"):
        SiteSummary.merge_all([s, None])
