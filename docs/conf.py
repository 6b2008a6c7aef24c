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


_gallery()
