import subprocess
import sys

import pytest

import layerscope.sinks
from layerscope.sinks._optional import require

CHECK = """
import sys
import layerscope.sinks
heavy = [m for m in ("matplotlib", "tensorboard", "pandas", "rich") if m in sys.modules]
print(",".join(heavy))
"""


def test_importing_sinks_imports_no_extra():
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == ""


def test_lazy_names_resolve():
    from layerscope.sinks.tensorboard import TensorBoardSink

    assert layerscope.sinks.TensorBoardSink is TensorBoardSink
    assert callable(layerscope.sinks.render_report)
    assert set(layerscope.sinks.__all__) <= set(dir(layerscope.sinks))
    with pytest.raises(AttributeError, match="NoSuchSink"):
        _ = layerscope.sinks.NoSuchSink


def test_missing_extra_names_the_install_command():
    with pytest.raises(ImportError, match=r"pip install layerscope\[plot\]"):
        require("layerscope_no_such_module", "plot", "Report")
