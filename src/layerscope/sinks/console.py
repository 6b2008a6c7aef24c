"""The terminal: findings logged or printed as they appear, and a per-layer table at the end.

:class:`LogSink` (every ``watch`` has one) sends each new finding once to the ``layerscope``
logger, which also says at attach time what is watched and where it goes. :class:`ConsoleSink`
prints findings and, when the run ends, a table per layer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from layerscope.lenses import GradientNorms, Loss, Optimizer
from layerscope.lenses.builtin import DeadUnits, GradientDeath
from layerscope.observation import site_kind, site_module
from layerscope.records import Record
from layerscope.sinks._optional import require
from layerscope.vocabulary import (
    FINDING,
    SEVERITY_LEVELS,
    Key,
    finding_text,
    is_finding,
    severity_name,
)

#: The logger of layerscope's messages. Configure it as any other: ``setLevel(logging.WARNING)``
#: keeps warning and error findings only, ``setLevel(logging.CRITICAL)`` silences it.
LOGGER = logging.getLogger("layerscope")
#: A finding's severity level (its record's value) -> the logging level it is logged at: the
#: logging level of the same name.
LOG_LEVELS: dict[int, int] = {
    level: logging.getLevelName(name.upper()) for name, level in SEVERITY_LEVELS.items()
}


class _FallbackHandler(logging.StreamHandler):
    """Writes to stderr only while the program configured no logging of its own.

    With no handler at all, Python prints warnings and errors only; layerscope's attach line
    is information. Once the root logger has a handler (``logging.basicConfig``, pytest) the
    records go there alone, so nothing is printed twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def _visible_logger() -> logging.Logger:
    """The ``layerscope`` logger, given the fallback handler and level INFO once if unset."""
    if not any(isinstance(h, _FallbackHandler) for h in LOGGER.handlers):
        handler = _FallbackHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("layerscope: %(message)s"))
        LOGGER.addHandler(handler)
        if LOGGER.level == logging.NOTSET:
            LOGGER.setLevel(logging.INFO)
    return LOGGER


def attach_line(
    model: object, modules: int, lenses: Iterable[str], logdir: str | None, sinks: Iterable[object]
) -> str:
    """The line logged when ``watch`` attaches: what is watched and where the records go.

    Example:
        >>> attach_line(object(), 5, ["loss", "health", "health"], "runs/a", [])
        'watching object (5 modules; lenses loss, health); TensorBoard run in runs/a; findings in scope.findings() and this log'

    """  # noqa: E501
    places = [f"TensorBoard run in {logdir}"] if logdir is not None else []
    places += [type(s).__name__ for s in sinks]
    where = "; ".join(places) if places else "records in memory (scope.records())"
    plural = "" if modules == 1 else "s"
    return (
        f"watching {type(model).__name__} ({modules} module{plural}; "
        f"lenses {', '.join(dict.fromkeys(lenses))}); "
        f"{where}; findings in scope.findings() and this log"
    )


class LogSink:
    """Logs each finding once, when it is first reported, through the ``layerscope`` logger.

    Info findings are logged at INFO, warnings at WARNING, errors at ERROR, as
    :func:`~layerscope.vocabulary.finding_text` writes them. When the program has configured no
    logging, they are printed to stderr; configure or silence them through
    ``logging.getLogger("layerscope")``.

    Args:
        logger: where to log; the ``layerscope`` logger when None.

    Example:
        >>> LogSink().write([Record(3, 0, "health", "fc1:output", "finding", "dead_units", 3.0,
        ...                        text="fc1 is dead")])

    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else _visible_logger()

    def attached(self, line: str) -> None:
        """Log the attach line at INFO."""
        self.logger.info(line)

    def write(self, records: Sequence[Record]) -> None:
        """Log the finding records among `records`."""
        for r in records:
            if r.quantity == FINDING:  # is_finding, without a call for each of a step's records
                level = LOG_LEVELS.get(r.value, logging.WARNING)  # type: ignore[call-overload]
                self.logger.log(level, finding_text(r))

    def close(self) -> None:
        """Nothing to finish."""


@dataclass(frozen=True)
class Column:
    """One column of the summary table: which records fill it, and how they are shown.

    Args:
        title: the header.
        quantities: record quantities that fill it, in order of preference.
        statistics: record statistics that fill it, in order of preference.
        what: only sites observing this (the part after ``:``, such as ``"weight.grad"``);
            the same quantity at another kind of site (``dead`` of an output and of an output
            gradient) fills another column.
        percent: show the value ×100 with a % sign.

    Example:
        >>> Column("dead %", ("dead",), ("fraction",), "output", percent=True).format(0.25)
        '25.0%'

    """

    title: str
    quantities: tuple[str, ...]
    statistics: tuple[str, ...]
    what: str | None = None
    percent: bool = False

    def matches(self, record: Record) -> bool:
        """Whether the record can fill this column."""
        return (
            record.quantity in self.quantities
            and record.statistic in self.statistics
            and record.value is not None
            and (self.what is None or site_kind(record.site) == self.what)
        )

    def rank(self, record: Record) -> tuple[int, int]:
        """Preference of a matching record: lower is better."""
        return self.quantities.index(record.quantity), self.statistics.index(record.statistic)

    def format(self, value: float) -> str:
        """Format the value for a cell."""
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3g}"

    @classmethod
    def of(cls, title: str, key: Key, what: str | None = None, percent: bool = False) -> Column:
        """A column filled by the records of one key.

        Example:
            >>> Column.of("dead %", DeadUnits.DEAD_FRACTION, "output").statistics
            ('fraction',)
        """
        return cls(title, (key.quantity,), (key.statistic,), what, percent)


#: The quantities the built-in lenses emit: DeadUnits (``active`` / ``dead`` of outputs),
#: GradientDeath (``dead`` of output gradients), GradientNorms and Optimizer.
DEFAULT_COLUMNS: tuple[Column, ...] = (
    Column.of("active %", DeadUnits.ACTIVE_FRACTION, DeadUnits.kinds[0], percent=True),
    Column.of("dead %", DeadUnits.DEAD_FRACTION, DeadUnits.kinds[0], percent=True),
    Column.of("no gradient %", GradientDeath.DEAD_FRACTION, GradientDeath.kinds[0], percent=True),
    Column.of("weight grad norm", GradientNorms.L2, "weight.grad"),
    Column.of("update / weight", Optimizer.UPDATE_RATIO, "weight"),
)


def summary_rows(
    records: Sequence[Record], columns: Sequence[Column] = DEFAULT_COLUMNS
) -> tuple[list[Column], list[list[str]]]:
    """Build the table: the columns that have data, one row per layer (the latest values).

    Rows follow the model: layers in the order their outputs were first recorded (the forward
    pass), then layers seen only through gradients or parameters, in the order they came.

    Example:
        >>> rs = [Record(0, 0, "a", "fc1:output", "dead", "fraction", 0.5)]
        >>> cols, rows = summary_rows(rs)
        >>> [c.title for c in cols], rows
        (['dead %'], [['fc1', '50.0%']])

    """
    best: dict[tuple[str, int], Record] = {}
    forward: dict[str, None] = {}
    for r in records:
        layer, what = site_module(r.site), site_kind(r.site)
        if not layer:
            continue
        if what == "output":
            forward.setdefault(layer)
        for i, column in enumerate(columns):
            if column.matches(r):
                old = best.get((layer, i))
                if old is None or (column.rank(r), -r.step) <= (column.rank(old), -old.step):
                    best[(layer, i)] = r
    used = sorted({i for _, i in best})
    layers = [layer for layer in forward if any((layer, i) in best for i in used)]
    layers += [layer for layer in dict.fromkeys(layer for layer, _ in best) if layer not in forward]
    rows = [
        [layer]
        + [
            columns[i].format(best[(layer, i)].value) if (layer, i) in best else "–"  # type: ignore[arg-type]
            for i in used
        ]
        for layer in layers
    ]
    return [columns[i] for i in used], rows


class ConsoleSink:
    """Prints findings as they arrive, and a per-layer table when the run closes.

    Findings (records with quantity ``"finding"``) are printed once each. At close a table
    shows per layer, in model order, the latest share of active units and of dead units
    (DeadUnits), of units whose output gradient stayed zero (GradientDeath), the weight
    gradient's norm (GradientNorms) and the update-to-weight ratio (Optimizer), only the
    columns with data, then the final loss. Uses rich when installed, else plain text.

    Args:
        console: a ``rich.console.Console`` to print to (implies rich).
        use_rich: True, False, or None to use rich when it is installed.
        stream: where plain text goes; ``sys.stdout`` at the time of printing when None.
        columns: the table's columns.

    Example:
        >>> sink = ConsoleSink(use_rich=False)
        >>> sink.write([Record(3, 0, "health", "fc1:output", "finding", "dead_units", 1.0)])
        warning: step 3: health: fc1:output: dead_units (1)

    """

    def __init__(
        self,
        console: Any = None,
        use_rich: bool | None = None,
        stream: TextIO | None = None,
        columns: Sequence[Column] = DEFAULT_COLUMNS,
    ) -> None:
        if console is not None and use_rich is False:
            raise ValueError("ConsoleSink: console is a rich Console; it needs use_rich=None/True")
        if use_rich is None:
            try:
                require("rich", "console", "ConsoleSink")
                use_rich = True
            except ImportError:
                use_rich = False
        if use_rich:
            console_module = require("rich.console", "console", "ConsoleSink")
            self.console = console or console_module.Console(file=stream)
        else:
            self.console = None
        self.stream = stream
        self.columns = tuple(columns)
        self.records: list[Record] = []
        self._seen: set[tuple[str, str, str]] = set()

    def _print(self, text: str, style: str = "") -> None:
        if self.console is not None:
            text_module = require("rich.text", "console", "ConsoleSink")
            self.console.print(text_module.Text(text, style=style))
        else:
            print(text, file=self.stream or sys.stdout)

    def write(self, records: Sequence[Record]) -> None:
        """Print new findings; keep the rest for the table."""
        for r in records:
            if is_finding(r):
                key = (r.tag, r.site, r.statistic)
                if key not in self._seen:
                    self._seen.add(key)
                    error = r.text and severity_name(r.value) == "error"
                    style = "bold red" if error else "bold yellow"
                    self._print(finding_text(r, "console"), style=style)
            else:
                self.records.append(r)

    def close(self) -> None:
        """Print the per-layer table and the final loss."""
        columns, rows = summary_rows(self.records, self.columns)
        if rows and self.console is not None:
            table_module = require("rich.table", "console", "ConsoleSink")
            table = table_module.Table(title="layerscope summary")
            table.add_column("layer")
            for column in columns:
                table.add_column(column.title, justify="right")
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
        elif rows:
            header = ["layer"] + [c.title for c in columns]
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                cells = [row[0].ljust(widths[0])]
                cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
                self._print("  ".join(cells))
        losses = [r for r in self.records if Loss.LOSS.of(r) and r.value is not None]
        if losses:
            last = max(losses, key=lambda r: r.step)
            self._print(f"loss at step {last.step}: {last.value:.4g}")
