"""Findings: what a health check concluded, and the log that reports each one once.

The log also groups findings by cause: a layer whose units are all dead starves the layers
before it of gradient, so they stop learning and the loss stops improving. Those consequences
are kept (``Finding.cause`` names what explains them) but reported under their cause, in its
message, instead of as findings of their own with advice of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layerscope.observation import site_kind, site_module
from layerscope.vocabulary import SEVERITY_LEVELS


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
        cause: ``(kind, site)`` of the finding that explains this one (None for a cause);
            a consequence is not reported on its own.
        consequences: what follows from this finding, as short clauses ("fc1 gets no
            gradient"); the first ones seen with it are part of its :attr:`text`.

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
    cause: tuple[str, str] | None = None
    consequences: tuple[str, ...] = ()

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
        """The message, what follows from it, and the suggestion, on one line."""
        message = self.message
        if self.consequences:
            message += ", so " + join_consequences(self.consequences)
        return f"{message}; {self.suggestion}" if self.suggestion else message


#: Clauses whose subjects are listed together: singular ending -> plural ending.
_PLURALS = {" gets no gradient": " get no gradient", " does not learn": " do not learn"}


def join_consequences(clauses: Iterable[str]) -> str:
    """Clauses on one line, those that say the same of several subjects said once.

    Example:
        >>> join_consequences(["fc2 gets no gradient", "fc1 gets no gradient",
        ...                    "fc1.bias does not learn"])
        'fc2 and fc1 get no gradient and fc1.bias does not learn'

    """
    clauses = list(clauses)
    out: list[str] = []
    for singular, plural in _PLURALS.items():
        subjects = [c.removesuffix(singular) for c in clauses if c.endswith(singular)]
        if len(subjects) == 1:
            out.append(subjects[0] + singular)
        elif subjects:
            out.append(", ".join(subjects[:-1]) + " and " + subjects[-1] + plural)
    out += [c for c in clauses if not any(c.endswith(s) for s in _PLURALS)]
    return " and ".join(out)


def parameter_name(site: str) -> str:
    """A parameter site as PyTorch names the parameter (``"fc1:weight"`` -> ``"fc1.weight"``).

    Example:
        >>> parameter_name("encoder.0.fc1:weight"), parameter_name(":bias")
        ('encoder.0.fc1.weight', 'bias')

    """
    module, what = site_module(site), site_kind(site)
    return f"{module}.{what}" if module else what


def share_text(value: float) -> str:
    """A ratio written as a person would: 63%, 0.004%, 1/2,000,000, 40×.

    Example:
        >>> [share_text(v) for v in (0.631, 1e-5, 3.2e-7, 1.7, 40.0)]
        ['63%', '0.001%', '1/3,125,000', '170%', '40×']

    """
    if value >= 10:
        return f"{value:,.0f}×"
    if value >= 0.1:
        return f"{value:.0%}"
    if value >= 1e-5:
        return f"{100 * value:.2g}%"
    if value > 0:
        return f"1/{round(1 / value):,}"
    return "0%"


def times_text(value: float) -> str:
    """A factor written as a person would: 3×, 1,000×, 100,000×.

    Example:
        >>> times_text(2.5), times_text(1e5)
        ('2.5×', '100,000×')

    """
    return f"{value:.2g}×" if value < 10 else f"{value:,.0f}×"


def consequence(f: Finding) -> str:
    """The clause a consequence adds to its cause's message.

    Example:
        >>> consequence(Finding("gradient_death", "error", 3, ("fc1:output.grad",),
        ...                     {"dead_fraction": 1.0}))
        'fc1 gets no gradient'

    """
    if f.kind == "gradient_death":
        fraction = f.evidence.get("dead_fraction", 1.0)
        whole = fraction >= 1.0
        where = site_module(f.site) or "the model"
        return (
            f"{where} gets no gradient"
            if whole
            else f"{fraction:.0%} of {where}'s units get no gradient"
        )
    if f.kind == "update_ratio_low":
        return f"{parameter_name(f.site)} does not learn"
    if f.kind == "loss_plateau":
        return "the loss stopped improving"
    return f.message


def explains(cause: Finding, effect: Finding, order: Mapping[str, int] | None = None) -> bool:
    """Whether `effect` follows from `cause` (an open finding).

    * units that never fire pass no gradient back: the gradient death of a layer before them
      (no more of its units than are dead), and, when all are dead, the stillness of every
      parameter before them and of the next layer after them (its input is zero), and a
      loss that stops improving;
    * a layer whose output gets no gradient does not learn: its parameters stand still.

    `order` maps module names to their depth (``named_modules()`` order); without it only
    same-module consequences are recognised.
    """
    if not cause.open or (cause.kind, cause.site) == (effect.kind, effect.site):
        return False
    if cause.kind == "gradient_death" and effect.kind == "update_ratio_low":
        return site_module(cause.site) == site_module(effect.site)
    if cause.kind != "dead_units":
        return False
    dead = cause.evidence.get("dead_fraction", 0.0)
    if effect.kind == "loss_plateau":
        return dead >= 1.0
    if order is None:
        return False
    here = order.get(site_module(cause.site), -1)
    there = order.get(site_module(effect.site), -1)
    if here < 0 or there < 0:
        return False
    if effect.kind == "gradient_death":
        return there < here and effect.evidence.get("dead_fraction", 1.0) <= dead
    if effect.kind == "update_ratio_low":
        # the next module with parameters is at most a dropout or norm further down
        return dead >= 1.0 and (there < here or 0 < there - here <= 2)
    return False


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

    def observe(
        self, step: int, seen: Iterable[Finding], order: Mapping[str, int] | None = None
    ) -> list[Finding]:
        """Fold one step's sightings in; return the findings to report now.

        A step may be observed in parts (a loss that arrives after the optimizer step is
        reviewed on its own): only its first part counts towards closing findings. A new
        finding that an open one explains (see :func:`explains`; `order` maps module names to
        their depth) is kept as its consequence, not reported; when the cause is reported on
        this step too, its message names the consequence.
        """
        fresh, self._last_step = step != self._last_step, step
        new: dict[tuple[str, str], Finding] = {}
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
                cause = self._cause_of(first, order)
                if cause is not None:
                    self._add_consequence(cause, first, new)
                    first = dataclasses.replace(first, cause=(cause.kind, cause.site))
                else:
                    new[key] = first
                self._findings[key] = first
            elif old.cause is not None:  # a consequence stays one, however bad it gets
                self._findings[key] = dataclasses.replace(
                    old, last_step=step, evidence=dict(f.evidence)
                )
            elif f.level > old.level:  # worse than first reported: report it again, same origin
                worse = dataclasses.replace(f, step=old.step, last_step=step, closed_step=None)
                self._findings[key] = worse
                new[key] = worse
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
        return [self._findings[key] for key in new]

    def _cause_of(self, f: Finding, order: Mapping[str, int] | None) -> Finding | None:
        """The open finding at the root of what explains `f`, if any."""
        for cause in self._findings.values():
            if cause.cause is None and explains(cause, f, order):
                return cause
        for cause in self._findings.values():  # through a consequence to its root
            if cause.cause is not None and explains(cause, f, order):
                root = self._findings.get(cause.cause)
                if root is not None and root.open:
                    return root
        return None

    def _add_consequence(
        self, cause: Finding, f: Finding, new: dict[tuple[str, str], Finding]
    ) -> None:
        """Name `f` among `cause`'s consequences (in its reported text if reported now)."""
        key = (cause.kind, cause.site)
        current = self._findings[key]
        clause = consequence(f)
        if clause not in current.consequences:
            grown = dataclasses.replace(current, consequences=(*current.consequences, clause))
            self._findings[key] = grown
            if key in new:
                new[key] = grown

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
            "findings": [finding_to_plain(f) for f in self._findings.values()],
            "history": [finding_to_plain(f) for f in self._history],
            "unseen": [[kind, site, n] for (kind, site), n in self._unseen.items()],
            "last_step": self._last_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: `state` is not a :meth:`state_dict` (a finding lacks a field...).
        """
        try:
            findings = [finding_from_plain(d) for d in state["findings"]]
            history = [finding_from_plain(d) for d in state["history"]]
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


def finding_to_plain(f: Finding) -> dict[str, Any]:
    """A finding as plain Python values, for checkpoints."""
    fields = dataclasses.asdict(f)
    fields["sites"] = list(f.sites)
    fields["evidence"] = {str(k): float(v) for k, v in f.evidence.items()}
    return fields


def finding_from_plain(fields: Mapping[str, Any]) -> Finding:
    """The finding :func:`finding_to_plain` made plain."""
    return Finding(
        **{**fields, "sites": tuple(fields["sites"]), "evidence": dict(fields["evidence"])}
    )
