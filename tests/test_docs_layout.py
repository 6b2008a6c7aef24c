"""The docs' code fits the page: no code line a reader has to scroll sideways for."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Characters of monospace text the docs theme's column shows without a scroll bar.
WIDTH = 88


def rst_code_lines(text: str) -> list[str]:
    """Lines of literal blocks (after ``::`` or a ``code-block``) in reStructuredText."""
    out, in_code, indent = [], False, 0
    for line in text.splitlines():
        stripped = line.strip()
        if in_code:
            if not stripped:
                continue
            if len(line) - len(line.lstrip()) > indent:
                out.append(line)
                continue
            in_code = False
        directive = stripped.startswith("..")  # a table or image, not code, unless code-block
        if stripped.startswith(".. code-block::") or (stripped.endswith("::") and not directive):
            in_code, indent = True, len(line) - len(line.lstrip())
    return out


def markdown_code_lines(text: str) -> list[str]:
    """Lines between ``` fences in Markdown."""
    out, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code:
            out.append(line)
    return out


def test_the_parsers_find_code():
    assert rst_code_lines("Text::\n\n    code\n\nmore text\n") == ["    code"]
    assert markdown_code_lines("a\n```py\nx = 1\n```\nb\n") == ["x = 1"]


@pytest.mark.parametrize(
    "path", [*sorted((ROOT / "docs").glob("*.rst")), ROOT / "README.md"], ids=lambda p: p.name
)
def test_code_lines_fit_the_column(path):
    text = path.read_text()
    lines = markdown_code_lines(text) if path.suffix == ".md" else rst_code_lines(text)
    wide = [line for line in lines if len(line.rstrip()) > WIDTH]
    assert not wide, f"{path.name}: code lines over {WIDTH} characters: {wide}"
