"""Train a tiny MLP for a few steps under layerscope and render the report's figures.

Run by the docs build (docs/conf.py) to make the gallery; also runnable by hand:
``python examples/report_gallery.py OUT_DIR``. Takes a few seconds on a CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import layerscope
from layerscope.sinks.report import render_report


def train(steps: int = 40) -> list[layerscope.Record]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    with torch.no_grad():
        model[2].bias.fill_(-5.0)  # a broken layer for the report to show: most units dead
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(512, 16), torch.randint(0, 4, (512,))
    with layerscope.watch(model, optimizer=opt) as scope:
        for step in range(steps):
            batch = slice(32 * (step % 16), 32 * (step % 16 + 1))
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    return scope.records()


def main(out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    # The gallery shows pictures; findings.md, written beside them, is text.
    return [p for p in render_report(train(), out, ["png"]) if p.suffix == ".png"]


if __name__ == "__main__":
    for path in main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/gallery")):
        print(path)
