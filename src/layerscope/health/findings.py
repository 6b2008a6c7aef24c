"""Findings: what a health check concluded, and the log that reports each one once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Severity names and the number a finding record carries as its value.
SEVERITY_LEVELS: dict[str, int] = {"info": 1, "warning": 2, "error": 3}


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a training run: what, how bad, since when, where, and the numbers.

    Attributes:
        kind: the check's name for it: ``"dead_units"``, ``"nan_origin"``, ``"loss_spike"``...
        severity: ``"info"``, ``"warning"`` or ``"error"``.
        step: the step it was first seen.
        sites: the sites involved, the primary one first (``()`` for whole-net findings).
        evidence: the numbers behind it (``{"dead_fraction": 1.0}``), as last seen.
        message: one line saying what is wrong.
        suggestion: one line saying what to try.
        last_step: the last step it was seen.
        closed_step: the step from which it was no longer seen, or None while it persists.

    Example:
        >>> f = Finding("dead_units", "warning", 12, ("act1:output",), {"dead_fraction": 1.0},
        ...             "100% of act1's units never fired", "lower the learning rate")
        >>> f.level, f.site
        (2, 'act1:output')

    """

    kind: str
    severity: str
    step: int
    sites: tuple[str, ...]
    evidence: Mapping[str, float] = field(default_factory=dict)
    message: str = ""
    suggestion: str = ""
    last_step: int | None = None
    closed_step: int | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_LEVELS:
            raise ValueError(
                f"Finding: severity must be one of {', '.join(SEVERITY_LEVELS)}, "
                f"got {self.severity!r}"
            )

    @property
    def level(self) -> int:
        """The severity as a number: 1 info, 2 warning, 3 error."""
        return SEVERITY_LEVELS[self.severity]

    @property
    def site(self) -> str:
        """The primary site (``""`` for whole-net findings)."""
        return self.sites[0] if self.sites else ""

    @property
    def open(self) -> bool:
        """Whether it was still seen on the last step checked."""
        return self.closed_step is None

    @property
    def text(self) -> str:
        """The message and the suggestion, on one line."""
        return f"{self.message}; {self.suggestion}" if self.suggestion else self.message


class FindingLog:
    """Keeps findings by (kind, primary site): new ones are reported, repeats only update.

    Each step, :meth:`observe` takes what the checks saw. A finding not seen before (or seen
    again after it closed, or seen with a higher severity) is returned as new; one already
    open is updated in place (``last_step``, evidence). An open finding not seen for
    ``close_after`` consecutive checked steps is closed. A finding that gets worse (a higher
    severity) is reported again, keeping the step it was first seen.

    Args:
        close_after: checked steps without a sighting before a finding closes.

    Example:
        >>> log = FindingLog(close_after=2)
        >>> f = Finding("loss_spike", "warning", 3, (), {"loss": 9.0}, "loss jumped")
        >>> [x.kind for x in log.observe(3, [f])], log.observe(4, [f])
        (['loss_spike'], [])
        >>> log.observe(5, []), log.observe(6, []), log.findings()[0].closed_step
        ([], [], 5)

    """

    def __init__(self, close_after: int = 3) -> None:
        if not isinstance(close_after, int) or close_after < 1:
            raise ValueError(
                f"FindingLog: close_after must be a positive integer, got {close_after!r}"
            )
        self.close_after = close_after
        self._findings: dict[tuple[str, str], Finding] = {}
        self._history: list[Finding] = []  # closed findings that later reopened
        self._unseen: dict[tuple[str, str], int] = {}
        self._last_step: int | None = None

    def observe(self, step: int, seen: Iterable[Finding]) -> list[Finding]:
        """Fold one step's sightings in; return the findings to report now.

        A step may be observed in parts (a loss that arrives after the optimizer step is
        reviewed on its own): only its first part counts towards closing findings.
        """
        fresh, self._last_step = step != self._last_step, step
        new: list[Finding] = []
        sighted: set[tuple[str, str]] = set()
        for f in seen:
            key = (f.kind, f.site)
            if key in sighted:
                continue
            sighted.add(key)
            old = self._findings.get(key)
            if old is None or not old.open:
                if old is not None:
                    self._history.append(old)
                first = dataclasses.replace(f, step=step, last_step=step, closed_step=None)
                self._findings[key] = first
                new.append(first)
            elif f.level > old.level:  # worse than first reported: report it again, same origin
                worse = dataclasses.replace(f, step=old.step, last_step=step, closed_step=None)
                self._findings[key] = worse
                new.append(worse)
            else:
                self._findings[key] = dataclasses.replace(
                    old, last_step=step, evidence=dict(f.evidence)
                )
            self._unseen[key] = 0
        for key, f in self._findings.items():
            if key in sighted or not f.open or not fresh:
                continue
            self._unseen[key] = self._unseen.get(key, 0) + 1
            if self._unseen[key] >= self.close_after:
                last = f.last_step if f.last_step is not None else f.step
                self._findings[key] = dataclasses.replace(f, closed_step=last + 1)
        return new

    def is_open(self, kind: str, site: str = "") -> bool:
        """Whether a finding of `kind` at `site` is open."""
        f = self._findings.get((kind, site))
        return f is not None and f.open

    def findings(self) -> list[Finding]:
        """Every finding, oldest first (reopened ones appear once per episode)."""
        return sorted([*self._history, *self._findings.values()], key=lambda f: f.step)

    def state_dict(self) -> dict[str, Any]:
        """The log as plain values, for checkpoints: a resumed run reports nothing twice."""
        return {
            "findings": [_plain(f) for f in self._findings.values()],
            "history": [_plain(f) for f in self._history],
            "unseen": [[kind, site, n] for (kind, site), n in self._unseen.items()],
            "last_step": self._last_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: `state` is not a :meth:`state_dict` (a finding lacks a field...).
        """
        try:
            findings = [_finding(d) for d in state["findings"]]
            history = [_finding(d) for d in state["history"]]
            unseen = {(str(kind), str(site)): int(n) for kind, site, n in state["unseen"]}
            last = state["last_step"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"FindingLog.load_state_dict: not a finding log's state ({error!r})"
            ) from error
        self._findings = {(f.kind, f.site): f for f in findings}
        self._history = history
        self._unseen = unseen
        self._last_step = None if last is None else int(last)


def _plain(f: Finding) -> dict[str, Any]:
    fields = dataclasses.asdict(f)
    fields["sites"] = list(f.sites)
    fields["evidence"] = {str(k): float(v) for k, v in f.evidence.items()}
    return fields


def _finding(fields: Mapping[str, Any]) -> Finding:
    return Finding(
        **{**fields, "sites": tuple(fields["sites"]), "evidence": dict(fields["evidence"])}
    )
