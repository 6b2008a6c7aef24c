"""The demo: a small MLP on scikit-learn's digits, trained healthy and with planted faults.

The bad variant initialises the first hidden layer's bias to -10 before its ReLU (its units
start dead) and multiplies the learning rate by 100. Each variant is trained under
``layerscope.watch``, writes a TensorBoard run and a Matplotlib report, and the demo prints
what it found: dead-unit fractions per layer, final losses, gradient norms, and the findings
of the health checks (what is wrong, where, and what to try).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from layerscope.lenses import DeadUnits, GradientNorms, Loss
from layerscope.observation import site_module
from layerscope.records import Record
from layerscope.vocabulary import finding_text, is_finding

#: name -> (planted faults, learning rate)
VARIANTS: dict[str, tuple[bool, float]] = {"healthy": (False, 0.05), "bad": (True, 5.0)}
BATCH = 64


class DigitsMLP(nn.Module):
    """64 -> 64 -> 32 -> 10 perceptron with ReLUs, for the 8×8 digits.

    Args:
        dead_bias: initialise ``fc1.bias`` to this value (-10 kills its ReLU units), or None.

    Example:
        >>> DigitsMLP()(torch.zeros(2, 64)).shape
        torch.Size([2, 10])

    """

    def __init__(self, dead_bias: float | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(32, 10)
        if dead_bias is not None:
            with torch.no_grad():
                self.fc1.bias.fill_(dead_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of flattened 8×8 images."""
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Load the digits shipped with scikit-learn (no download): inputs in [0, 1], labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "demo: the demo trains on scikit-learn's digits and needs scikit-learn; install "
            "it with `pip install 'layerscope[all]'` (or `pip install scikit-learn`)"
        ) from error

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    return x, torch.tensor(digits.target, dtype=torch.int64)


def latest(records: Iterable[Record]) -> dict[str, float]:
    """Map each site (the quantity for whole-net values) to its value at the latest step."""
    found: dict[str, Record] = {}
    for r in records:
        key = r.site or r.quantity
        if r.value is not None and (key not in found or r.step >= found[key].step):
            found[key] = r
    return {k: float(r.value) for k, r in found.items()}  # type: ignore[arg-type]


@dataclass
class Findings:
    """What the demo reports about one run.

    Example:
        >>> rs = [Record(5, 0, "activations", "fc1:output", "dead", "fraction", 1.0),
        ...       Record(5, 0, "loss", "", "loss", "last", 2.3)]
        >>> Findings.from_records(rs).dead
        {'fc1': 1.0}

    """

    dead: dict[str, float] = field(default_factory=dict)
    gradient_dead: dict[str, float] = field(default_factory=dict)
    grad_norms: dict[str, float] = field(default_factory=dict)
    loss: float = math.nan
    health: list[str] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> Findings:
        """Read the latest dead fractions, weight-gradient norms, loss and findings from records."""
        dead_fractions = [r for r in records if DeadUnits.DEAD_FRACTION.of(r)]
        dead = latest(r for r in dead_fractions if r.site.endswith(":output"))
        gradient_dead = latest(r for r in dead_fractions if r.site.endswith(":output.grad"))
        norms = latest(
            r for r in records if GradientNorms.L2.of(r) and r.site.endswith(":weight.grad")
        )
        losses = latest(r for r in records if Loss.LOSS.of(r))
        return cls(
            dead={site_module(site): v for site, v in dead.items()},
            gradient_dead={site_module(site): v for site, v in gradient_dead.items()},
            grad_norms={site_module(site): v for site, v in norms.items()},
            loss=losses.get(Loss.LOSS.quantity, math.nan),
            health=[finding_text(r) for r in records if is_finding(r)],
        )

    def lines(self, name: str) -> list[str]:
        """Human-readable lines for the terminal."""

        def fmt(values: dict[str, float], pattern: str) -> str:
            return ", ".join(f"{k} {pattern.format(v)}" for k, v in values.items()) or "n/a"

        out = [
            f"{name}: final loss {self.loss:.4g}",
            f"  dead units (never active): {fmt(self.dead, '{:.0%}')}",
            f"  gradient death (zero output gradient): {fmt(self.gradient_dead, '{:.0%}')}",
            f"  weight-gradient norms: {fmt(self.grad_norms, '{:.3g}')}",
        ]
        if self.health:
            out.append(f"  health findings ({len(self.health)}):")
            out.extend(f"    {line}" for line in self.health)
        return out


def _progress(steps: int, name: str, show: bool) -> Iterable[int]:
    if show:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return range(steps)
        return tqdm(range(steps), desc=name, unit="step", leave=False)
    return range(steps)


def train_variant(name: str, out_dir: Path, steps: int, progress: bool, seed: int = 0) -> Findings:
    """Train one variant under ``layerscope.watch``; write its TensorBoard run and report."""
    import layerscope
    from layerscope.sinks.report import render_report

    faults, lr = VARIANTS[name]
    torch.manual_seed(seed)
    x, y = load_data()
    model = DigitsMLP(dead_bias=-10.0 if faults else None)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    per_epoch = len(x) // BATCH
    with layerscope.watch(model, optimizer=opt, logdir=out_dir / "tensorboard" / name) as scope:
        for step in _progress(steps, name, progress):
            if step and step % per_epoch == 0:
                scope.epoch()
                order = torch.randperm(len(x), generator=generator)
            batch = order[(step % per_epoch) * BATCH : (step % per_epoch + 1) * BATCH]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
        records = scope.records()
    render_report(records, out_dir / "report" / name, ["png", "html"])
    return Findings.from_records(records)


def run_demo(
    out_dir: str | Path = "runs/demo",
    steps: int = 150,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Findings]:
    """Train both variants, write runs and reports under ``out_dir``, print the findings."""
    if steps < 1:
        raise ValueError(f"demo: steps must be at least 1, got {steps}")
    out = Path(out_dir)
    results = {}
    for name in VARIANTS:
        results[name] = train_variant(name, out, steps, progress)
        for line in results[name].lines(name):
            echo(line)
    echo(f"TensorBoard runs: tensorboard --logdir {out / 'tensorboard'}")
    echo(f"reports: {out / 'report'} (open {out / 'report' / 'bad' / 'report.html'})")
    return results
