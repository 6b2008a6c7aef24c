"""The Health lens: runs the health checks on each step it observes and emits their findings."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from layerscope.gatherers.nonfinite import FINITE_KINDS
from layerscope.health.base import Check, StepView
from layerscope.health.catalog import CHECKS
from layerscope.health.findings import Finding, FindingLog
from layerscope.lenses.base import EmitContext, Lens, owns_parameters
from layerscope.records import Record
from layerscope.reduce.contract import NOTHING, Needs
from layerscope.vocabulary import FINDING, Key

_LENS_OPTIONS = ("modules", "names", "where", "every", "first", "schedule", "tag")


class Health(Lens):
    """Turns the statistics of a step into findings: what is wrong, and where.

    Dead units, saturation, vanishing or exploding gradients, update ratios, NaN origin, loss
    spikes, attention collapse...

    Each finding is reported once, when first seen (a record with tag ``"health"``, quantity
    ``"finding"``, statistic = its kind, value = its level 1 info / 2 warning / 3 error, site =
    its primary site, and ``text`` = message and suggestion); while it persists it is updated,
    and it closes after ``close_after`` checked steps without it. ``scope.findings()`` returns
    them all. Several checks read other lenses' records (DeadUnits, GradientDeath,
    GradientNorms, Loss, the optimizer and attention lenses): keep those lenses in the set.

    Args:
        checks: names of the checks to run (default: all of :data:`layerscope.health.CHECKS`),
            or :class:`~layerscope.health.Check` instances.
        close_after: checked steps without a sighting before a finding closes.
        **options: per-check options, ``saturation={"tanh_limit": 0.99}``; and the lens options
            ``modules``, ``names``, ``where`` (which module outputs the checks read),
            ``every``, ``first``, ``schedule``, ``tag``.

    Raises:
        ValueError: an unknown check, option or check option (the message names it).

    Example:
        >>> h = Health(checks=("nan_origin", "loss"), loss={"spike_factor": 3.0})
        >>> [c.name for c in h.checks], h.checks[1].spike_factor
        (['nan_origin', 'loss'], 3.0)

    """

    default_tag = "health"
    kinds = ("output", "output.grad")

    def __init__(
        self,
        *,
        checks: Sequence[str | Check] | None = None,
        close_after: int = 10,
        **options: Any,
    ) -> None:
        lens_options = {k: options.pop(k) for k in _LENS_OPTIONS if k in options}
        for key, value in options.items():
            if key not in CHECKS:
                raise ValueError(
                    f"Health: unknown option {key!r}; accepted: checks, close_after, "
                    f"{', '.join(_LENS_OPTIONS)}, or a check's name: {', '.join(CHECKS)}"
                )
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"Health: option {key!r} must be a dict of that check's options, got {value!r}"
                )
        chosen = list(CHECKS) if checks is None else list(checks)
        self.checks: list[Check] = []
        for c in chosen:
            if isinstance(c, Check):
                self.checks.append(c)
            elif isinstance(c, str) and c in CHECKS:
                self.checks.append(CHECKS[c](**options.get(c, {})))
            else:
                raise ValueError(f"Health: unknown check {c!r}; choose from {', '.join(CHECKS)}")
        names = {c.name for c in self.checks}
        for key in options:
            if key not in names:
                raise ValueError(
                    f"Health: options given for check {key!r}, which is not run "
                    f"(checks={sorted(names)})"
                )
        # The findings so far: a resumed run reports nothing twice. Checks judge the windows
        # merged across ranks, so one log (the first instance's, rank 0's) holds them all.
        self.log: FindingLog
        self.add_state(
            "log",
            FindingLog(close_after),
            merge="first",
            save=FindingLog.state_dict,
            load=functools.partial(_finding_log, close_after),
        )
        # The checks that failed and were disabled stay disabled.
        self.failed: set[str]
        self.add_state("failed", set(), merge="union", save=sorted, load=set)
        # Each check's own state (its windows of recent values), under its name.
        self.add_children("checks", _by_name(self.checks))
        # What StepView indexes; a check added later that reads other keys finds them anyway.
        self._reads = _reads_of(self.checks)
        self._types: dict[str, type[nn.Module]] = {}
        super().__init__(**lens_options)

    # -- selection and needs ---------------------------------------------------------------------
    def select(self, named_modules: Iterable[tuple[str, nn.Module]]) -> list[str]:
        """The selected modules (leaf modules by default); remembers their types."""
        pairs = list(named_modules)
        chosen = super().select(pairs)
        modules = dict(pairs)
        self._types = {name: type(modules[name]) for name in chosen}
        return chosen

    def needs(self, kind: str) -> Needs:
        """The counts of the summary, except where a check asks for more (see :meth:`needs_at`)."""
        return NOTHING

    def needs_at(self, module: str, kind: str) -> Needs:
        """What the checks need at `module`'s site of `kind` (threshold counts for saturation)."""
        module_type = self._types.get(module)
        out = NOTHING
        if module_type is not None:
            for check in self.checks:
                out = out | check.needs_at(module, module_type, kind)
        return out

    # -- records ---------------------------------------------------------------------------------
    def emit(self, ctx: EmitContext, sites: Iterable[str]) -> list[Record]:
        """Nothing of its own: the findings come in :meth:`review`."""
        return []

    def review(self, ctx: EmitContext, records: list[Record]) -> list[Record]:
        """Run every check on the step; a record for each new finding."""
        view = StepView(ctx.step, ctx.windows, records, ctx.module_order, self._types, self._reads)
        seen: list[Finding] = []
        for check in self.checks:
            if check.name in self.failed:
                continue
            try:
                seen.extend(check.run(view))
            except Exception as error:  # noqa: BLE001 - a failing check must not kill training
                self.failed.add(check.name)
                warnings.warn(
                    f"layerscope: health check {check.name!r} failed and is disabled: {error!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return [
            Record(
                step=ctx.step,
                epoch=ctx.epoch,
                tag=self.tag,
                site=f.site,
                quantity=FINDING,
                statistic=f.kind,
                value=float(f.level),
                text=f.text,
            )
            for f in self.log.observe(ctx.step, seen, ctx.module_order)
        ]

    def findings(self) -> list[Finding]:
        """Every finding so far, oldest first."""
        return self.log.findings()


class NonFinite(Health):
    """Where NaN or Inf first appeared, checked on every step whatever ``every`` says.

    Counts the non-finite elements of every leaf module's output and output gradient and of
    every parameter gradient, on every step (one fused pass per tensor,
    :class:`~layerscope.gatherers.FiniteGatherer`), and runs the ``nan_origin`` check on them:
    a NaN born on a step the other lenses skip is still traced to its first site and step. Its
    findings are the Health lens's (tag ``"health"``); :func:`~layerscope.lenses.default`
    runs the check here rather than in :class:`Health`.

    Args:
        **options: ``nan_origin``, ``close_after`` and the lens options of :class:`Health`
            (``every`` defaults to 1, not to ``watch``'s ``every``).

    Example:
        >>> [c.name for c in NonFinite().checks], NonFinite().every
        (['nan_origin'], 1)

    """

    kinds = FINITE_KINDS

    def __init__(self, *, every: int = 1, **options: Any) -> None:  # noqa: ANN401
        super().__init__(checks=("nan_origin",), every=every, **options)

    def selects(self, name: str, module: nn.Module) -> bool:
        """Leaf modules (outputs), and modules with parameters of their own (gradients)."""
        if not (self.default_choice(module) or owns_parameters(module)):
            return False
        return super().selects(name, module)

    def default_choice(self, module: nn.Module) -> bool:
        """The base choice, and containers with parameters of their own."""
        return super().default_choice(module) or owns_parameters(module)

    def kinds_at(self, module: nn.Module) -> tuple[str, ...]:
        """Outputs at leaf modules, parameter gradients where the module owns parameters."""
        kinds: tuple[str, ...] = ()
        if Lens.default_choice(self, module):
            kinds += ("output.finite", "output.grad.finite")
        if owns_parameters(module):
            kinds += ("weight.grad.finite", "bias.grad.finite")
        return kinds

    def needs(self, kind: str) -> Needs:
        """The counts themselves."""
        return Needs(values=True)

    def needs_at(self, module: str, kind: str) -> Needs:
        """The counts themselves, at every site."""
        return Needs(values=True)


def _by_name(checks: Sequence[Check]) -> dict[str, Check]:
    """The checks by name; a name given twice gets its place appended (``"loss#2"``)."""
    out: dict[str, Check] = {}
    for i, check in enumerate(checks):
        out[check.name if check.name not in out else f"{check.name}#{i}"] = check
    return out


def _finding_log(close_after: int, state: Mapping[str, Any]) -> FindingLog:
    """A finding log restored from its :meth:`~FindingLog.state_dict`."""
    log = FindingLog(close_after)
    log.load_state_dict(state)
    return log


def _reads_of(checks: Iterable[Check]) -> frozenset[Key] | None:
    """The record keys the checks find (None when one of them may read any)."""
    reads: set[Key] = set()
    for check in checks:
        if check.reads is None:
            return None
        reads |= check.reads
    return frozenset(reads)
