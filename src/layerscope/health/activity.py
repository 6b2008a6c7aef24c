"""Checks on unit activity: dead units and gradient death, from the activity lenses' records."""

from __future__ import annotations

from collections.abc import Iterable

from layerscope.health.base import Check, StepView, short
from layerscope.health.findings import Finding
from layerscope.lenses.builtin import DeadUnits, GradientDeath
from layerscope.observation import site_kind


class _DeadFraction(Check):
    """Shared reading of ``dead.fraction`` records (DeadUnits / GradientDeath lenses)."""

    options = {"fraction": 0.6}
    reads = frozenset({DeadUnits.DEAD_FRACTION, GradientDeath.DEAD_FRACTION})
    kind = "dead"
    what = DeadUnits.kinds[0]

    def run(self, view: StepView) -> Iterable[Finding]:
        """A finding per site whose dead fraction reaches ``fraction`` (error when all dead)."""
        for r in view.find(DeadUnits.DEAD_FRACTION):
            if site_kind(r.site) != self.what or r.value < self.fraction:  # type: ignore[operator]
                continue
            value = float(r.value)  # type: ignore[arg-type]
            severity = "error" if value >= 1.0 else "warning"
            yield self.finding(
                self.kind,
                severity,
                view,
                [r.site],
                {"dead_fraction": value},
                *self.words(r.site, value),
            )

    def words(self, site: str, value: float) -> tuple[str, str]:
        """The message and suggestion."""
        raise NotImplementedError


class DeadUnitsCheck(_DeadFraction):
    """Units whose output never became active over the DeadUnits lens's window.

    Options: ``fraction`` (0.6): the dead share of a layer's units that makes a finding.

    Example:
        >>> DeadUnitsCheck(fraction=0.9).fraction
        0.9

    """

    name = "dead_units"
    kind = "dead_units"
    what = DeadUnits.kinds[0]

    def words(self, site: str, value: float) -> tuple[str, str]:
        """What is wrong with the layer, and what to try."""
        return (
            f"{value:.0%} of {short(site)}'s units never fired over the window",
            "check its bias/initialisation, lower the learning rate, or use LeakyReLU/GELU",
        )


class GradientDeathCheck(_DeadFraction):
    """Units whose output gradient stayed exactly zero over the GradientDeath lens's window.

    Options: ``fraction`` (0.6).

    Example:
        >>> GradientDeathCheck().name
        'gradient_death'

    """

    name = "gradient_death"
    kind = "gradient_death"
    what = GradientDeath.kinds[0]

    def words(self, site: str, value: float) -> tuple[str, str]:
        """What is wrong with the layer, and what to try."""
        return (
            f"{value:.0%} of {short(site)}'s units got no gradient over the window",
            "the layer after it is dead or detached; these weights do not learn",
        )
