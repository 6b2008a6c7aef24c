"""Outputs proved clean by their clean input are not read again, and the proof is never wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope.gatherers.nonfinite as nonfinite
from health_models import run, teacher_data
from layerscope.gatherers.known_finite import KnownFinite, keeps_finite, keeps_finite_backward
from layerscope.health import NonFinite

FINITE_KEEPERS = [
    nn.ReLU(),
    nn.ReLU6(),
    nn.LeakyReLU(0.2),
    nn.LeakyReLU(-1.0),
    nn.Hardtanh(-3.0, 2.0),
    nn.MaxPool2d(2),
    nn.MaxPool2d(3, stride=1, padding=1),  # padded with -inf: each window holds one element
    nn.AdaptiveMaxPool2d(1),
    nn.Flatten(),
    nn.Unflatten(1, (2, 2)),
    nn.Identity(),
]


@pytest.mark.parametrize("module", FINITE_KEEPERS, ids=lambda m: repr(m))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_the_modules_kept_finite_give_finite_outputs_for_the_most_extreme_finite_inputs(
    module: nn.Module, dtype: torch.dtype
) -> None:
    assert keeps_finite(module)
    info = torch.finfo(dtype)
    extremes = torch.tensor(
        [info.max, -info.max, info.tiny, -info.tiny, info.smallest_normal / 4, 0.0, -0.0, 1.0],
        dtype=dtype,
    )
    g = torch.Generator().manual_seed(0)
    x = extremes[torch.randint(len(extremes), (4, 4, 6, 6), generator=g)]
    assert torch.isfinite(x).all()
    assert torch.isfinite(module(x)).all()


class MyReLU(nn.ReLU):
    pass


@pytest.mark.parametrize(
    "module",
    [
        nn.GELU(),  # float32: inf from 1.7e38 up
        nn.Hardswish(),  # from 6.4e37 up
        nn.Tanh(),
        nn.SiLU(),
        nn.Linear(2, 2),
        nn.LeakyReLU(1.5),
        nn.Hardtanh(-1.0, float("inf")),
        MyReLU(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_modules_that_may_compute_a_non_finite_value_are_not_kept_finite(module: nn.Module) -> None:
    assert not keeps_finite(module)


def test_a_forward_replaced_on_the_instance_is_not_kept_finite() -> None:
    relu = nn.ReLU()
    relu.forward = lambda x: x * float("inf")  # type: ignore[method-assign]
    assert not keeps_finite(relu)


def test_a_known_tensor_is_known_only_as_it_was() -> None:
    known = KnownFinite()
    x = torch.ones(3)
    known.add(x)
    assert known.output_is_clean((x,), x.relu(), inplace=False)
    assert not known.output_is_clean((x.clone(),), x, inplace=False)  # another tensor
    assert not known.output_is_clean((), x, inplace=False)
    x.relu_()  # an in-place module writes its input once: the same tensor, one version on
    assert known.output_is_clean((x,), x, inplace=True)
    assert not known.output_is_clean((x,), x.relu(), inplace=False)  # written since
    x.mul_(2)
    assert not known.output_is_clean((x,), x, inplace=True)
    known.clear()
    assert not known.output_is_clean((x,), x.relu(), inplace=False)


def small_cnn(inplace: bool = False, side: int = 8) -> nn.Sequential:
    """Conv, ReLU, MaxPool, Flatten, Linear over `side` x `side` images."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * (side // 2) ** 2, 3),
    )


def cnn_data(steps: int, side: int = 8, batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return teacher_data(steps, shape=(1, side, side), batch=batch)


class SitesRead:
    """The sites the finiteness gatherer reads, per step (``note`` is run's `before_step`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.per_step: list[set[str]] = []
        self._read: set[str] = set()
        observe = nonfinite.FiniteGatherer._observe

        def counting(gatherer, name, kind, site, tensor):  # noqa: ANN001, ANN202
            self._read.add(site.removesuffix(nonfinite.FINITE_SUFFIX))
            return observe(gatherer, name, kind, site, tensor)

        monkeypatch.setattr(nonfinite.FiniteGatherer, "_observe", counting)

    def note(self, step: int, x: torch.Tensor) -> torch.Tensor:
        """Close the previous step's set (``before_step`` runs before each step's forward)."""
        self.per_step.append(self._read)
        self._read = set()
        return x


@pytest.mark.parametrize("inplace", [False, True])
def test_a_conv_relu_pool_chain_is_read_once_on_the_steps_between_observations(
    inplace: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = SitesRead(monkeypatch)
    run(small_cnn(inplace), cnn_data(4), every=1000, before_step=read.note)
    # Step 0, observed by every lens, summarizes the outputs; steps 1 and 2 observe nothing
    # else, and the search reads the convolution's and the head's outputs: the ReLU's, the
    # pooling's and the flattening's are proved clean.
    outputs_read = [{site for site in step if site.endswith(":output")} for step in read.per_step]
    assert outputs_read[2:] == [{"0:output", "4:output"}, {"0:output", "4:output"}]


def poison_after(armed_at: int):
    """A forward hook writing NaN into its module's output in place from the given call on."""
    calls = []

    def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
        calls.append(1)
        if len(calls) - 1 >= armed_at:
            with torch.no_grad():
                output[0, 0].fill_(float("nan"))

    return hook


@pytest.mark.parametrize("inplace", [False, True])
def test_a_nan_written_into_a_counted_output_is_found_at_the_next_module(inplace: bool) -> None:
    # The hook runs after layerscope's, which counted the convolution's output clean; the write
    # moves its version on, so the ReLU's output is read, and holds the NaN.
    model = small_cnn(inplace)
    model[0].register_forward_hook(poison_after(3))
    scope, losses = run(model, cnn_data(6), every=1000, lenses=[NonFinite()])
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("1:output",), 3)]


def test_a_nan_written_into_a_proved_output_is_found_at_the_next_module() -> None:
    model = small_cnn(False)
    model[2].register_forward_hook(poison_after(3))  # the pooling's output, proved clean
    scope, _ = run(model, cnn_data(6), every=1000, lenses=[NonFinite()])
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("3:output",), 3)]


class ArmedSqrtReLU(nn.Module):
    """ReLU until the given call; then sqrt(max(x, 0)), whose gradient at 0 is inf * 0 = NaN."""

    def __init__(self, armed_at: int) -> None:
        super().__init__()
        self.armed_at, self.calls = armed_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.sqrt(x * (x > 0)) if self.calls - 1 >= self.armed_at else torch.relu(x)


def test_the_gradient_of_an_output_proved_clean_is_still_searched() -> None:
    # The ReLU's output is proved clean in the forward pass; the NaN is born in the gradient
    # reaching it (the ReLU masks it out of the gradients below, so no other site holds one).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), ArmedSqrtReLU(3), nn.Linear(32, 3))
    scope, _ = run(model, teacher_data(6), every=1000, lenses=[NonFinite()])
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("1:output.grad",), 3)]


def test_max_pooling_passes_a_clean_gradient_back_clean_only_where_its_windows_do_not_overlap() -> (
    None
):
    assert keeps_finite_backward(nn.MaxPool2d(2))
    assert keeps_finite_backward(nn.MaxPool2d(3, stride=3, padding=1))
    assert not keeps_finite_backward(nn.MaxPool2d(3, stride=1, padding=1))  # gradients add up
    assert not keeps_finite_backward(nn.MaxPool2d(2, dilation=2))
    assert not keeps_finite_backward(nn.AdaptiveMaxPool2d(3))  # its windows may overlap
    assert keeps_finite_backward(nn.ReLU(inplace=True))
    assert not keeps_finite_backward(nn.Identity())  # no node of its own
    assert not keeps_finite_backward(MyReLU())


def big_cnn_data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # every gradient of the chain at least FOLLOW_BACK_FROM elements: 64 x 4 x 8 x 8 after pooling
    return cnn_data(steps, side=16, batch=64)


def big_cnn(inplace: bool = False) -> nn.Sequential:
    return small_cnn(inplace, side=16)


@pytest.mark.parametrize("inplace", [False, True])
def test_a_conv_relu_pool_chain_reads_its_gradients_once_too(
    inplace: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = SitesRead(monkeypatch)
    run(big_cnn(inplace), big_cnn_data(4), every=1000, before_step=read.note)
    # Steps 1 and 2 (idle): outputs read at the convolution and the head; output gradients at
    # the head and the flattening (whose consumer, the head, is no such module); the pooling's,
    # the ReLU's and the convolution's gradients are what the next module's node handed back
    # from a clean one.
    expected = {
        "0:output",
        "4:output",
        "4:output.grad",
        "3:output.grad",
        "0:weight.grad",
        "0:bias.grad",
        "4:weight.grad",
        "4:bias.grad",
    }
    assert read.per_step[2:] == [expected, expected]


class TwoPaths(nn.Module):
    """The convolution's output feeds a ReLU chain and a side path: its gradient is a sum."""

    def __init__(self, side: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * 8 * 8, 3)
        self.side = side
        self.side_head = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv(x)
        main = self.head(self.flatten(self.pool(self.relu(t))))
        return main + self.side_head(self.side(t).flatten(1))


def test_a_gradient_summed_from_two_consumers_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    read = SitesRead(monkeypatch)
    run(TwoPaths(nn.Tanh()), big_cnn_data(4), every=1000, before_step=read.note)
    assert "conv:output.grad" in read.per_step[2]
    assert "relu:output.grad" not in read.per_step[2]  # the pooling's alone


def test_a_nan_born_on_a_second_consumers_path_is_found_at_the_summed_gradient() -> None:
    # The ReLU hands back a clean gradient; the side path's square root a NaN at each t <= 0.
    scope, _ = run(TwoPaths(ArmedSqrtReLU(3)), big_cnn_data(6), every=1000, lenses=[NonFinite()])
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("conv:output.grad",), 3)]


def test_a_gradient_a_users_hook_changed_after_it_was_counted_is_not_passed_on_as_clean() -> None:
    model = big_cnn()
    calls = []

    def poison_gradient(module: nn.Module, args: object, output: torch.Tensor) -> None:
        calls.append(1)
        if len(calls) - 1 >= 3:  # a hook after layerscope's: it sees the gradient first
            output.register_hook(lambda g: g.masked_fill(torch.rand_like(g) < 0.5, float("nan")))

    model[1].register_forward_hook(poison_gradient)
    scope, _ = run(model, big_cnn_data(6), every=1000, lenses=[NonFinite()])
    origins = [f for f in scope.findings() if f.kind == "nan_origin"]
    assert [(f.sites, f.step) for f in origins] == [(("0:output.grad",), 3)]
