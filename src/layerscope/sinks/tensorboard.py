"""TensorBoardSink: records as TensorBoard scalars, histograms and a custom-scalars layout."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layerscope.records import HistogramValue, Record
from layerscope.sinks._optional import require
from layerscope.sinks.event_file import EventFile

#: Bands of a margin chart: the candidates for its centre line (the first written wins), and
#: the statistics of its lower and upper edges.
BANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("mean",), "mean-std", "mean+std"),
    (("median",), "q25", "q75"),
    (("mean", "median", "min"), "min", "max"),
)


def histogram_summary(histogram: HistogramValue) -> dict[str, Any] | None:
    """Build the arguments of ``histogram_raw`` (``torch.utils.tensorboard.summary``) for one.

    TensorBoard reads bucket ``i`` as spanning ``(limit[i-1], limit[i]]`` with ``min`` as the
    left edge of the first bucket and ``max`` as the right edge of the last, so the buckets
    are trimmed to the non-empty ones and ``min`` / ``max`` are their outer edges: the
    tightest bounds the histogram gives. ``sum`` and ``sum_squares`` are estimated from bin
    centres. Underflow and overflow become one extra bucket, one bin wide, beyond each end.

    Args:
        histogram: the record's histogram.

    Returns:
        Keyword arguments for ``histogram_raw`` (without the name), or None when the
        histogram counted nothing.

    Example:
        >>> h = HistogramValue(edges=(0.0, 1.0, 2.0, 3.0), counts=(0, 2, 1))
        >>> s = histogram_summary(h)
        >>> s["min"], s["max"], s["num"], s["bucket_limits"], s["sum"]
        (1.0, 3.0, 3, [2.0, 3.0], 5.5)

    """
    edges = [float(e) for e in histogram.edges]
    counts = [int(c) for c in histogram.counts]
    if histogram.underflow:
        edges.insert(0, edges[0] - (edges[1] - edges[0]))
        counts.insert(0, int(histogram.underflow))
    if histogram.overflow:
        edges.append(edges[-1] + (edges[-1] - edges[-2]))
        counts.append(int(histogram.overflow))
    nonempty = [i for i, c in enumerate(counts) if c > 0]
    if not nonempty:
        return None
    first, last = nonempty[0], nonempty[-1]
    counts = counts[first : last + 1]
    edges = edges[first : last + 2]
    centres = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return {
        "min": edges[0],
        "max": edges[-1],
        "num": sum(counts),
        "sum": sum(c * x for c, x in zip(counts, centres, strict=True)),
        "sum_squares": sum(c * x * x for c, x in zip(counts, centres, strict=True)),
        "bucket_limits": edges[1:],
        "bucket_counts": counts,
    }


def finding_markdown(record: Record) -> str:
    """The text a finding record shows in TensorBoard's text tab.

    Example:
        >>> finding_markdown(Record(4, 0, "health", "fc1:output", "finding", "dead_units", 2.0,
        ...                         text="fc1 is dead; lower the learning rate"))
        '**warning** at `fc1:output`, step 4: fc1 is dead; lower the learning rate'

    """
    from layerscope.health.findings import SEVERITY_LEVELS

    names = {v: k for k, v in SEVERITY_LEVELS.items()}
    severity = names.get(int(record.value or 0), "finding")
    where = f"`{record.site}`" if record.site else "the model"
    return f"**{severity}** at {where}, step {record.step}: {record.text or record.statistic}"


def derived_bands(records: Sequence[Record]) -> list[Record]:
    """``mean-std`` and ``mean+std`` records for every step/site/quantity with mean and std.

    Example:
        >>> rs = [Record(1, 0, "a", "fc:output", "value", "mean", 2.0),
        ...       Record(1, 0, "a", "fc:output", "value", "std", 0.5)]
        >>> [(r.statistic, r.value) for r in derived_bands(rs)]
        [('mean-std', 1.5), ('mean+std', 2.5)]

    """
    found: dict[tuple[int, int, str, str, str], dict[str, float]] = {}
    for r in records:
        if r.statistic in ("mean", "std") and r.value is not None:
            key = (r.step, r.epoch, r.tag, r.site, r.quantity)
            found.setdefault(key, {})[r.statistic] = r.value
    out = []
    for (step, epoch, tag, site, quantity), stats in found.items():
        if "mean" in stats and "std" in stats:
            mean, std = stats["mean"], stats["std"]
            out.append(Record(step, epoch, tag, site, quantity, "mean-std", mean - std))
            out.append(Record(step, epoch, tag, site, quantity, "mean+std", mean + std))
    return out


def _scalar_name(tag: str, site: str, quantity: str, statistic: str) -> str:
    return Record(0, 0, tag, site, quantity, statistic).name


class TensorBoardSink:
    """Writes records to a TensorBoard log directory.

    Scalars are named by :attr:`Record.name` (``tag/site/quantity.statistic``) at global step
    ``record.step``; histogram records are written from their edges and counts; findings
    (quantity ``"finding"``) are written as text under ``"<tag>/<kind>"``
    (``health/dead_units``). Where a
    site/quantity has mean and std (written also as ``mean-std`` / ``mean+std`` scalars) or
    min and max, a margin chart in the custom-scalars dashboard shows the centre line with its
    bands (mean±std, q25–q75, min–max) together, one category per tag. The layout is written
    when the first records of a site arrive, and again only if later sites add charts.
    Each write (one flush of the scope) appends one event per step to the run's event file
    (:class:`~layerscope.sinks.event_file.EventFile`) and flushes it.

    Args:
        logdir: directory of the run; created if missing.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sink = TensorBoardSink(d)
        ...     sink.write([Record(0, 0, "loss", "", "loss", "last", 2.3)])
        ...     sink.close()
        ...     sink.scalars_written
        1

    """

    def __init__(self, logdir: str | Path) -> None:
        if not isinstance(logdir, (str, Path)) or not str(logdir):
            raise ValueError(
                f"TensorBoardSink: logdir must be a non-empty path (str or Path), got {logdir!r}"
            )
        require("tensorboard", "tensorboard", "TensorBoardSink")
        self._summary = require("torch.utils.tensorboard.summary", "tensorboard", "TensorBoardSink")
        self.logdir = Path(logdir)
        self._events = EventFile(self.logdir)
        self._events_name = str(self._events.path)
        self._charts: dict[str, dict[str, list[tuple[str, ...]]]] = {}
        self._scalar_names: set[str] = set()  # every scalar name written so far
        self._name_of: dict[tuple[str, ...], str] = {}  # (tag, site, quantity, statistic)
        self.scalars_written = 0
        self.histograms_written = 0
        self.texts_written = 0
        self.closed = False

    def write(self, records: Sequence[Record]) -> None:
        """Write one flush of records and flush the event file."""
        if self.closed:
            raise RuntimeError("TensorBoardSink.write: the sink is closed")
        lost = not self._events.path.exists()
        if lost:  # the logdir (or the file) was deleted: writing on would go nowhere
            self._events.close()
            self._events = EventFile(self.logdir)
            warnings.warn(
                f"layerscope: TensorBoardSink: the event file {self._events_name} was deleted "
                f"while the run wrote to it; the events before step {min_step(records)} are "
                f"lost; writing on in {self._events.path}",
                RuntimeWarning,
                stacklevel=2,
            )
        self._events_name = str(self._events.path)
        for r in records:
            if r.quantity == "finding":  # health findings are prose: TensorBoard's text tab
                text = self._summary.text(f"{r.tag}/{r.statistic}", finding_markdown(r))
                self._events.add(text, r.step)
                self.texts_written += 1
        records = [r for r in records if r.quantity != "finding"]
        scalars = [r for r in records if r.histogram is None and r.value is not None]
        new_names = self._write_scalars([*scalars, *derived_bands(scalars)])
        for r in records:
            if r.histogram is not None:
                summary = histogram_summary(r.histogram)
                if summary is not None:
                    self._events.add(self._summary.histogram_raw(r.name, **summary), r.step)
                    self.histograms_written += 1
        # A chart changes only when a name of its site and quantity is written the first time.
        if (new_names and self._update_charts(new_names) or lost) and scalars:
            self._write_layout(max(r.step for r in scalars))
        self._events.flush()

    def close(self) -> None:
        """Flush and close the event file; later closes do nothing."""
        if not self.closed:
            self._events.close()
            self.closed = True

    def _write_scalars(self, scalars: Sequence[Record]) -> list[Record]:
        """Write scalars as one event per step holding many values; return the newly named."""
        by_step: dict[int, list[tuple[str, float]]] = {}
        new_names = []
        for r in scalars:
            key = r[2:6]  # tag, site, quantity, statistic: a run repeats the same few hundred
            name = self._name_of.get(key)
            if name is None:
                name = self._name_of[key] = r.name
                if name not in self._scalar_names:
                    self._scalar_names.add(name)
                    new_names.append(r)
            by_step.setdefault(r.step, []).append((name, r.value))
        for step, values in by_step.items():
            self._events.add_scalars(step, values)
        self.scalars_written += len(scalars)
        return new_names

    def _update_charts(self, records: Sequence[Record]) -> bool:
        """Add the margin charts that the names written so far allow; True if any was added."""
        added = False
        for r in records:
            title = f"{r.site}/{r.quantity}" if r.site else r.quantity
            category = self._charts.setdefault(r.tag, {})
            series = []
            for centres, lower, upper in BANDS:
                names = [_scalar_name(r.tag, r.site, r.quantity, s) for s in centres]
                written = [n for n in names if n in self._scalar_names]
                edges = tuple(_scalar_name(r.tag, r.site, r.quantity, s) for s in (lower, upper))
                if written and all(n in self._scalar_names for n in edges):
                    series.append((written[0], *edges))
            if len(series) > len(category.get(title, [])):
                category[title] = series
                added = True
        return added

    def _write_layout(self, step: int) -> None:
        layout_pb2 = require(
            "tensorboard.plugins.custom_scalar.layout_pb2", "tensorboard", "TensorBoardSink"
        )
        layout = layout_pb2.Layout()
        for tag in sorted(self._charts):
            charts = self._charts[tag]
            if not charts:
                continue
            category = layout.category.add(title=tag)
            for title, series in charts.items():
                chart = category.chart.add(title=title)
                for value, lower, upper in series:
                    chart.margin.series.add(value=value, lower=lower, upper=upper)
        if layout.category:
            self._events.add(layout_summary(layout), step)


def min_step(records: Sequence[Record]) -> int | str:
    """The first step of a batch of records (``"?"`` for an empty batch)."""
    return min((r.step for r in records), default="?")


def layout_summary(layout: Any) -> Any:
    """Wrap a custom-scalars ``Layout`` proto in the Summary the custom-scalars plugin reads.

    (``tensorboard.plugins.custom_scalar.summary.pb`` does the same but needs TensorFlow.)
    """
    metadata = require("tensorboard.plugins.custom_scalar.metadata", "tensorboard", "layouts")
    summary_pb2 = require("tensorboard.compat.proto.summary_pb2", "tensorboard", "layouts")
    tensor_pb2 = require("tensorboard.compat.proto.tensor_pb2", "tensorboard", "layouts")
    tensor = tensor_pb2.TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()])
    value = summary_pb2.Summary.Value(
        tag=metadata.CONFIG_SUMMARY_TAG,
        tensor=tensor,
        metadata=metadata.create_summary_metadata(),
    )
    return summary_pb2.Summary(value=[value])
