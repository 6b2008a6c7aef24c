"""Sphinx configuration: API pages from the docstrings (autodoc + napoleon), a gallery rendered
at build time by examples/report_gallery.py, the C++ API from the engine's headers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

import layerscope  # noqa: E402

project = "layerscope"
author = "layerscope developers"
copyright = "layerscope developers"  # noqa: A001
release = version = layerscope.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Options", "params_style")]  # health checks list their options
exclude_patterns = ["_build", "_generated/*.rst"]
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings = ["config.cache"]


def _gallery() -> None:
    """Train a tiny model and render the report's figures into _generated/gallery."""
    sys.path.insert(0, str(ROOT / "examples"))
    import report_gallery

    out = HERE / "_generated" / "gallery"
    paths = report_gallery.main(out)
    lines = []
    for path in sorted(paths):
        title = path.stem.replace("_", " ")
        lines += [title, "-" * len(title), "", f".. image:: /_generated/gallery/{path.name}",
                  "   :width: 100%", f"   :alt: the {title} figure of the report", ""]
    (HERE / "_generated" / "gallery_figures.rst").write_text("\n".join(lines))


def _live() -> None:
    """Train the gallery's model with a LiveFigure writing its last frame to _generated."""
    import torch
    from torch import nn

    import layerscope
    from layerscope.sinks import LiveFigure

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    with torch.no_grad():
        model[2].bias.fill_(-5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    live = LiveFigure(path=HERE / "_generated" / "live.png", mode="file",
                      tags=["loss", "activity", "gradients"], max_panels=6)
    x, y = torch.randn(512, 16), torch.randint(0, 4, (512,))
    with layerscope.watch(model, optimizer=opt, sinks=[live]) as scope:
        for step in range(40):
            batch = slice(32 * (step % 16), 32 * (step % 16 + 1))
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)


_gallery()
_live()
