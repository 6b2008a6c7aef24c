"""Reading TensorBoard event files back into records, for runs written by any program."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from layerscope.records import HistogramValue, Record
from layerscope.sinks._optional import require

_STATISTIC = re.compile(r"[A-Za-z][\w+-]*")
#: Scalars TensorBoardSink derives for its margin charts; the report draws them from mean/std.
DERIVED = frozenset({"mean-std", "mean+std"})


def parse_name(name: str) -> tuple[str, str, str, str]:
    """Split a scalar's name into (tag, site, quantity, statistic).

    Names in layerscope's former ``tag/site/quantity.statistic`` form come back as they were
    (runs it writes now carry their fields in metadata, which :func:`read_run` reads); other
    names are grouped by their first path component as tag, and their statistic is
    ``"value"``.

    Example:
        >>> parse_name("gradients/fc1:weight.grad/l2.last")
        ('gradients', 'fc1:weight.grad', 'l2', 'last')
        >>> parse_name("train/accuracy"), parse_name("loss")
        (('train', '', 'accuracy', 'value'), ('loss', '', 'loss', 'value'))

    """
    parts = name.split("/")
    if len(parts) == 1:
        return name, "", name, "value"
    tag, last = parts[0], parts[-1]
    site = "/".join(parts[1:-1])
    quantity, dot, statistic = last.rpartition(".")
    if dot and quantity and _STATISTIC.fullmatch(statistic):
        return tag, site, quantity, statistic
    return tag, site, last, "value"


def _key(acc: object, name: str) -> tuple[str, str, str, str]:
    """A name's record fields: from the metadata layerscope writes, else from the name."""
    from layerscope.sinks.tensorboard import record_key

    try:
        description = acc.SummaryMetadata(name).summary_description  # type: ignore[attr-defined]
    except (KeyError, AttributeError):
        description = ""
    return record_key(description) or parse_name(name)


def _histogram(value: object) -> HistogramValue | None:
    limits = list(getattr(value, "bucket_limit", []))
    counts = [int(round(c)) for c in getattr(value, "bucket", [])]
    if not counts or len(limits) != len(counts):
        return None
    edges = np.array([float(value.min), *limits[:-1], float(value.max)], dtype=np.float64)
    if not np.all(np.isfinite(edges[[0, -1]])) or np.isnan(edges).any():
        return None  # a writer's NaN min/max: no bucket can be placed
    edges = np.maximum.accumulate(edges)  # TensorFlow's ±DBL_MAX outer limits
    return HistogramValue(edges=tuple(edges.tolist()), counts=tuple(counts))


#: Folders a search for runs never enters: hidden ones, environments, caches.
SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", ".venv", "venv"})


def is_event_file(name: str) -> bool:
    """Whether a file name is a TensorBoard event file's (``events.out.tfevents.*``)."""
    return name.startswith("events.out.tfevents")


def find_runs(run_dir: str | Path) -> list[Path]:
    """Directories under ``run_dir`` (itself included) that hold event files, sorted.

    Symbolic links are not followed, and hidden folders, virtual environments and caches are
    not entered; folders that cannot be read are passed over.
    """
    root = Path(run_dir)
    found = []
    for directory, folders, files in os.walk(root, followlinks=False):
        folders[:] = sorted(
            f for f in folders if not f.startswith(".") and f not in SKIPPED_FOLDERS
        )
        if any(is_event_file(f) for f in files):
            found.append(Path(directory))
    return sorted(found)


def read_events(directory: str | Path) -> list[Record]:
    """Read the event files directly in one run's ``directory`` (not its sub-folders).

    Scalars become records with the step of their event and epoch 0; histograms become
    histogram records; a histogram whose buckets cannot be placed is skipped.
    """
    accumulator = require(
        "tensorboard.backend.event_processing.event_accumulator", "tensorboard", "read_run"
    )
    acc = accumulator.EventAccumulator(
        str(directory), size_guidance={"scalars": 0, "histograms": 0}
    )
    acc.Reload()
    records: list[Record] = []
    tags = acc.Tags()
    for name in tags.get("scalars", []):
        tag, site, quantity, statistic = _key(acc, name)
        if statistic in DERIVED:
            continue
        for event in acc.Scalars(name):
            records.append(Record(event.step, 0, tag, site, quantity, statistic, event.value))
    for name in tags.get("histograms", []):
        tag, site, quantity, statistic = _key(acc, name)
        for event in acc.Histograms(name):
            histogram = _histogram(event.histogram_value)
            if histogram is not None:
                records.append(
                    Record(event.step, 0, tag, site, quantity, "histogram", None, histogram)
                )
    return records


def read_run(run_dir: str | Path) -> dict[str, list[Record]]:
    """Read every run under ``run_dir`` into records, keyed by the run's relative path.

    Scalars become records with the step of their event and epoch 0; histograms become
    histogram records.

    Example:
        >>> import tempfile
        >>> from layerscope.sinks.tensorboard import TensorBoardSink
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sink = TensorBoardSink(d + "/a")
        ...     sink.write([Record(7, 0, "loss", "", "loss", "last", 0.5)])
        ...     sink.close()
        ...     read_run(d)
        {'a': [Record(step=7, epoch=0, tag='loss', site='', quantity='loss', statistic='last', value=0.5, histogram=None, text=None)]}

    """  # noqa: E501
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"read_run: run_dir must be a directory, got {str(run_dir)!r}")
    return {
        directory.relative_to(root).as_posix(): read_events(directory)
        for directory in find_runs(root)
    }
