"""TensorBoardSink: records as TensorBoard scalars, histograms and a custom-scalars layout."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layerscope.lenses import Loss
from layerscope.observation import site_kind, site_module
from layerscope.records import HistogramValue, Record
from layerscope.sinks._optional import require
from layerscope.sinks.event_file import EventFile
from layerscope.vocabulary import LAST, VALUE, finding_text, is_finding

#: Bands of a margin chart: the candidates for its centre line (the first written wins), and
#: the statistics of its lower and upper edges. Only statistics a lens records: no helper
#: scalars are written for the charts.
BANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("median",), "q25", "q75"),
    (("mean", "median", "min"), "min", "max"),
)


def scalar_name(tag: str, site: str, quantity: str, statistic: str) -> str:
    """The name a record has in TensorBoard: the module as Python reaches it, then what of it.

    TensorBoard groups names by their first ``/`` part and sorts the groups by name, so each
    module's values sit together in one section named as the module is reached from the model
    (``model.fc2``, ``model.encoder.layers.0.linear1``), then what is recorded there as PyTorch
    names it: ``model.fc2/weight.grad.l2`` is the norm of ``model.fc2.weight.grad``. A
    ``value`` quantity is named by its statistic alone, a ``last`` statistic by its quantity
    alone. Whole-model values sit in ``model/``, and the loss, ``loss``, sorts before them all.
    The record's own fields travel with the name (see :class:`TensorBoardSink`).

    Example:
        >>> scalar_name("gradients", "fc2:weight.grad", "l2", "last")
        'model.fc2/weight.grad.l2'
        >>> scalar_name("activations", "encoder.0:output", "value", "mean")
        'model.encoder.0/output.mean'
        >>> scalar_name("activity", "act1:output", "dead", "fraction")
        'model.act1/output.dead.fraction'
        >>> scalar_name("loss", "", "loss", "last"), scalar_name("loss", "", "loss", "std")
        ('loss', 'loss/std')
        >>> scalar_name("gradients", "", "global_l2", "last"), scalar_name("o", ":output", "l2", "last")
        ('model/global_l2', 'model/output.l2')
        >>> scalar_name("optimizer", "param_group[0]", "lr", "last")
        'optimizer/param_group[0].lr'

    """  # noqa: E501
    if statistic == LAST:
        label = quantity
    elif quantity == VALUE:
        label = statistic
    else:
        label = f"{quantity}.{statistic}"
    if not site:
        if quantity == Loss.LOSS.quantity:
            return "loss" if statistic == LAST else f"loss/{statistic}"
        return f"model/{label}"
    if site.startswith("param_group["):  # the optimizer's, not a module's
        return f"optimizer/{site}.{label}"
    module, what = site_module(site), site_kind(site)
    section = f"model.{module}" if module else "model"
    return f"{section}/{what}.{label}" if what else f"{section}/{label}"


class ScalarNames:
    """Gives each (tag, site, quantity, statistic) its :func:`scalar_name`, once and for good.

    Two lenses recording the same thing of the same site would get the same name: the later one
    is told apart by its tag (``"model.fc1/output.mean (activations)"``).

    Example:
        >>> names = ScalarNames()
        >>> names("activations", "fc1:output", "value", "mean")
        ('model.fc1/output.mean', True)
        >>> names("mine", "fc1:output", "value", "mean")
        ('model.fc1/output.mean (mine)', True)
        >>> names("activations", "fc1:output", "value", "mean")
        ('model.fc1/output.mean', False)

    """

    def __init__(self) -> None:
        self.name_of: dict[tuple[str, ...], str] = {}  # (tag, site, quantity, statistic)
        self.key_of: dict[str, tuple[str, ...]] = {}  # the reverse: every name given so far

    def __call__(self, *key: str) -> tuple[str, bool]:
        """The name of `key`, and whether it is given now (its first use)."""
        name = self.name_of.get(key)
        if name is not None:
            return name, False
        name = scalar_name(*key)
        if name in self.key_of:
            name = f"{name} ({key[0]})"
            while name in self.key_of:
                name += "'"
        self.name_of[key] = name
        self.key_of[name] = key
        return name, True


#: How the description of a name written by layerscope starts; the record's fields follow.
DESCRIPTION = "layerscope record (tag, site, quantity, statistic): "


def describe(key: Sequence[str]) -> str:
    """The description a name's first event carries: the record's fields, readable and exact.

    Example:
        >>> describe(("gradients", "fc1:weight.grad", "l2", "last"))
        'layerscope record (tag, site, quantity, statistic): ["gradients", "fc1:weight.grad", "l2", "last"]'

    """  # noqa: E501
    return DESCRIPTION + json.dumps(list(key))


def record_key(description: str) -> tuple[str, str, str, str] | None:
    """The (tag, site, quantity, statistic) a name's description carries, or None if not ours.

    Example:
        >>> record_key(describe(("gradients", "fc1:weight.grad", "l2", "last")))
        ('gradients', 'fc1:weight.grad', 'l2', 'last')
        >>> record_key("a description someone wrote") is None
        True

    """
    if not description.startswith(DESCRIPTION):
        return None
    try:
        key = json.loads(description[len(DESCRIPTION) :])
    except ValueError:
        return None
    if isinstance(key, list) and len(key) == 4 and all(isinstance(k, str) for k in key):
        return key[0], key[1], key[2], key[3]
    return None


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


class TensorBoardSink:
    """Writes records to a TensorBoard log directory.

    Scalars are named by :func:`scalar_name` (``fc2/weight.grad.l2``: one section per module,
    the loss as ``loss``) at global step ``record.step``; the first event of each name carries
    the record's (tag, site, quantity, statistic) as its description, which
    :func:`~layerscope.sinks.events.read_run` reads back. Two records that would share a name
    (two lenses recording the same thing) are told apart by their tag: ``"fc2/output.mean
    (mine)"``. Histogram records are written from their edges and counts; findings (quantity
    ``"finding"``) as text under ``"<tag>/<kind>"`` (``health/dead_units``). Where a
    site/quantity has a centre line (mean or median) and min and max, or median and q25 and
    q75, a margin chart in the custom-scalars dashboard shows them together, one category per
    tag. The layout is written when the first records of a site arrive, and again only if
    later sites add charts. Each write (one flush of the scope) appends one event per step to
    the run's event file (:class:`~layerscope.sinks.event_file.EventFile`) and flushes it.

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
        self._summary_pb2 = require(
            "tensorboard.compat.proto.summary_pb2", "tensorboard", "TensorBoardSink"
        )
        self.logdir = Path(logdir)
        self._events = EventFile(self.logdir)
        self._events_name = str(self._events.path)
        self._charts: dict[str, dict[str, list[tuple[str, ...]]]] = {}
        self._names = ScalarNames()
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
            if is_finding(r):  # health findings are prose: TensorBoard's text tab
                text = self._summary.text(f"{r.tag}/{r.statistic}", finding_text(r, "markdown"))
                self._events.add(text, r.step)
                self.texts_written += 1
        records = [r for r in records if not is_finding(r)]
        scalars = [r for r in records if r.histogram is None and r.value is not None]
        new_names = self._write_scalars(scalars)
        for r in records:
            if r.histogram is not None:
                summary = histogram_summary(r.histogram)
                if summary is not None:
                    name, new = self._names(*r[2:6])
                    event = self._summary.histogram_raw(name, **summary)
                    if new:
                        metadata = event.value[0].metadata
                        metadata.summary_description = describe(r[2:6])
                        metadata.plugin_data.plugin_name = "histograms"
                    self._events.add(event, r.step)
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
        """Write scalars as one event per step holding many values; return the newly named.

        A name's first value goes in an event of its own whose metadata holds the record's
        fields (TensorBoard keeps the metadata of a name's first event).
        """
        by_step: dict[int, list[tuple[str, float]]] = {}
        new_names = []
        pb2 = self._summary_pb2
        for r in scalars:
            name, new = self._names(*r[2:6])  # tag, site, quantity, statistic
            if new:
                new_names.append(r)
                metadata = pb2.SummaryMetadata(summary_description=describe(r[2:6]))
                metadata.plugin_data.plugin_name = "scalars"
                value = pb2.Summary.Value(tag=name, simple_value=r.value, metadata=metadata)
                self._events.add(pb2.Summary(value=[value]), r.step)
            else:
                by_step.setdefault(r.step, []).append((name, r.value))
        for step, values in by_step.items():
            self._events.add_scalars(step, values)
        self.scalars_written += len(scalars)
        return new_names

    def _update_charts(self, records: Sequence[Record]) -> bool:
        """Add the margin charts that the names written so far allow; True if any was added."""
        added = False
        for r in records:
            title = scalar_name(r.tag, r.site, r.quantity, "last").removesuffix(".value")
            category = self._charts.setdefault(r.tag, {})
            series = []
            name_of = self._names.name_of
            for centres, lower, upper in BANDS:
                names = [name_of.get((r.tag, r.site, r.quantity, s)) for s in centres]
                written = [n for n in names if n is not None]
                edges = [name_of.get((r.tag, r.site, r.quantity, s)) for s in (lower, upper)]
                if written and None not in edges:
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
        # the loss first, then the lenses in the order their first records came
        for tag in sorted(self._charts, key=lambda t: t != "loss"):
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
