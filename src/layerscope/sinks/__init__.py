"""Sinks: where records go (TensorBoard, Matplotlib report and live figure, console, tables).

Importing this package imports none of the optional extras (tensorboard, matplotlib, pandas,
rich): each sink class is loaded on first access, and each imports its extra when it is built,
raising an ImportError that names the extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from layerscope.sinks.base import GuardedSink, Sink

_LAZY: dict[str, str] = {
    "TensorBoardSink": "layerscope.sinks.tensorboard",
    "Report": "layerscope.sinks.report",
    "ReportSink": "layerscope.sinks.report",
    "render_report": "layerscope.sinks.report",
    "LiveFigure": "layerscope.sinks.live",
    "ConsoleSink": "layerscope.sinks.console",
    "DataFrameSink": "layerscope.sinks.table",
    "to_pandas": "layerscope.sinks.table",
    "to_csv": "layerscope.sinks.table",
    "to_parquet": "layerscope.sinks.table",
    "read_run": "layerscope.sinks.events",
}

__all__ = ["GuardedSink", "Sink", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'layerscope.sinks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
