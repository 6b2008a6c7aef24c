"""A real browser (Debian's chromium, headless) looks at the HTML report and the docs site.

``make test`` installs chromium (the Makefile's system-deps); without it these tests skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from layerscope.records import Record
from layerscope.sinks.report import render_report
from sink_records import make_records

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make system-deps)"),
]


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1600) -> np.ndarray:
    """The page as chromium draws it: RGB floats, height x width."""
    size = f"--window-size={width},{height}"
    chromium(size, f"--screenshot={out}", page.as_uri(), cwd=out.parent)
    pixels = imread(out)[..., :3]
    assert pixels.shape[:2] == (height, width)
    return pixels


def dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after chromium loaded it."""
    return chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri(), cwd=tmp_path).stdout


def near(pixels: np.ndarray, colour: str, tolerance: float = 0.06) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` (#rrggbb) in every channel."""
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.all(np.abs(pixels - rgb) < tolerance, axis=-1).sum())


def test_html_report_in_a_browser(tmp_path):
    long = (
        "100% of act1's units never fired over the window; check its bias/initialisation, "
        "lower the learning rate, or use LeakyReLU/GELU"
    )
    finding = Record(19, 0, "health", "act1:output", "finding", "dead_units", 3.0, text=long)
    render_report([*make_records(), finding], tmp_path / "report", ["html"])
    page = tmp_path / "report" / "report.html"
    text = dom(page, tmp_path)
    assert long in text.replace("&#x27;", "'")
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', text)) == 3
    pixels = screenshot(page, tmp_path / "report.png")
    assert pixels.std() > 0.05  # not a blank page
    assert near(pixels, "#b22222") > 50  # the error finding's red border
    assert near(pixels, "#1f77b4") > 200  # Matplotlib's blue lines: the figures are drawn


@pytest.mark.slow
def test_docs_site_in_a_browser(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html"]
        + [str(ROOT / "docs"), str(site)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    index = dom(site / "index.html", tmp_path)
    assert "layerscope" in index
    assert 'href="gallery.html"' in index
    pixels = screenshot(site / "index.html", tmp_path / "index.png", height=900)
    assert pixels.std() > 0.05
    gallery = dom(site / "gallery.html", tmp_path)
    images = re.findall(r'<img [^>]*src="(_images/[^"]+\.png)"', gallery)
    assert len(images) >= 5
    assert all((site / image).is_file() for image in images)
    shot = screenshot(site / "gallery.html", tmp_path / "gallery.png", height=2400)
    assert near(shot, "#1f77b4") > 100  # the report's figures are drawn on the page
