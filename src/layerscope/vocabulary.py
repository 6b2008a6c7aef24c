"""The words every stage shares: record keys, the finding record, severities and a finding's text.

A record is found by its key, ``(quantity, statistic)``. Each lens exports the keys it writes
(``DeadUnits.DEAD_FRACTION``, ``GradientNorms.GLOBAL_L2``...) and the checks and sinks that read
those records import them, so no stage spells out another's strings. The Health lens writes its
findings as records of quantity :data:`FINDING` whose value is a severity level of
:data:`SEVERITY_LEVELS`; :func:`finding_text` is how every sink turns one into prose.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import NamedTuple

from layerscope.records import Record


class Key(NamedTuple):
    """What a record holds: its quantity and how it is reduced (its statistic).

    A plain pair, so it compares equal to the tuple ``(quantity, statistic)``.

    Example:
        >>> DEAD = Key("dead", "fraction")
        >>> DEAD.of(Record(3, 0, "activity", "fc1:output", "dead", "fraction", 0.5)), str(DEAD)
        (True, 'dead.fraction')
    """

    quantity: str
    statistic: str

    def of(self, record: Record) -> bool:
        """Whether `record` is a record of this key."""
        return record.quantity == self.quantity and record.statistic == self.statistic

    def __str__(self) -> str:
        return f"{self.quantity}.{self.statistic}"


#: The quantity of statistics of a tensor's elements (``value.mean``, ``value.median``).
VALUE = "value"
#: The statistic of one number per step (a norm, the loss, a share): ``l2.last``.
LAST = "last"
#: The statistic of a record that carries a histogram.
HISTOGRAM = "histogram"

#: The quantity of a finding record; its statistic is the finding's kind (``"dead_units"``).
FINDING = "finding"

#: Severity names and the level a finding record carries as its value.
SEVERITY_LEVELS: dict[str, int] = {"info": 1, "warning": 2, "error": 3}
_SEVERITY_NAMES = {level: name for name, level in SEVERITY_LEVELS.items()}  # 3.0 finds 3 too


def is_finding(record: Record) -> bool:
    """Whether `record` is a finding (quantity :data:`FINDING`)."""
    return record.quantity == FINDING


def severity_name(level: float | None, unknown: str = "finding") -> str:
    """The severity of a finding record's value, or `unknown` when it is not a level.

    Example:
        >>> severity_name(3.0), severity_name(None), severity_name(0.75)
        ('error', 'finding', 'finding')
        >>> severity_name(float('nan'))
        'finding'
    """
    return _SEVERITY_NAMES.get(level, unknown)  # type: ignore[arg-type]


class FindingLayout(NamedTuple):
    """How a finding record reads in one place: the line, how a site is quoted, the model named.

    The line is a ``str.format`` template over ``severity``, ``step``, ``where`` and ``kind``
    (the record's statistic) and ``text`` (the finding's message and suggestion, or its kind);
    ``escape``, when given, is applied to the site, kind and text first.
    """

    line: str
    quote: str = "{}"
    model: str = "model"
    escape: Callable[[str], str] | None = None


def _html(text: str) -> str:  # apostrophes stay as typed: the page reads as the log does
    return html.escape(text, quote=False)


#: Where findings are read, and how they read there.
FINDING_LAYOUTS: dict[str, FindingLayout] = {
    # the log, and anything else that reads one line per finding
    "line": FindingLayout("{severity}, step {step}, {where}: {text}"),
    # the terminal, where the severity leads and the kind is spelled out
    "console": FindingLayout("{severity}: step {step}: {where}: {kind}: {text}"),
    # findings.md, the HTML report and TensorBoard's text tab
    "markdown": FindingLayout(
        "**{severity}**, step {step}, {where} ({kind}): {text}", "`{}`", "the model"
    ),
    # the HTML report, inside an element whose class is the severity
    "html": FindingLayout(
        '<span class="severity">{severity}</span> step {step}, {where} ({kind}): {text}',
        "<code>{}</code>",
        "the model",
        _html,
    ),
}


def finding_text(record: Record, layout: str = "line") -> str:
    """A finding record as one line of prose, laid out as :data:`FINDING_LAYOUTS` says.

    A finding record that carries no text (written by hand, not by the Health lens) reads in
    the ``"console"`` layout as a warning that shows its tag and value.

    Example:
        >>> r = Record(19, 0, "health", "act1:output", "finding", "dead_units", 3.0,
        ...            text="act1 is dead; fix it")
        >>> finding_text(r)
        'error, step 19, act1:output: act1 is dead; fix it'
        >>> finding_text(r, "markdown")
        '**error**, step 19, `act1:output` (dead_units): act1 is dead; fix it'
        >>> finding_text(r._replace(site="", text=None, value=0.5), "console")
        'warning: step 19: health: model: dead_units (0.5)'

    Raises:
        ValueError: `layout` is not one of :data:`FINDING_LAYOUTS`.
    """
    spec = FINDING_LAYOUTS.get(layout)
    if spec is None:
        raise ValueError(
            f"finding_text: unknown layout {layout!r}; choose from {', '.join(FINDING_LAYOUTS)}"
        )
    escape = spec.escape or str
    where = spec.quote.format(escape(record.site)) if record.site else spec.model
    if layout == "console" and not record.text:
        value = "" if record.value is None else f" ({record.value:.3g})"
        return f"warning: step {record.step}: {record.tag}: {where}: {record.statistic}{value}"
    return spec.line.format(
        severity=severity_name(record.value),
        step=record.step,
        where=where,
        kind=escape(record.statistic),
        text=escape(record.text or record.statistic),
    )
