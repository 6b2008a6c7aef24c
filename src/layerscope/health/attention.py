"""Attention checks: heads collapsed onto one position, or stuck uniform after warm-up.

They read the attention lens's ``entropy_ratio.mean`` records at sites
``"<module>:attention.head<h>"`` (entropy over its maximum, log of the key count).
"""

from __future__ import annotations

from collections.abc import Iterable

from layerscope.health.base import Check, Series, StepView
from layerscope.lenses import Attention
from layerscope.observation import site_kind, site_module


class AttentionCheck(Check):
    """Per head: collapse (entropy ratio near 0) and uniform attention (near 1).

    Attention starts close to uniform, so uniformity is only a finding when every value of the
    window stays above ``uniform_above`` after ``min_steps`` observed steps.

    Options: ``collapse_below`` (0.05), ``uniform_above`` (0.995), ``window`` (10),
    ``min_steps`` (100).

    Example:
        >>> AttentionCheck(collapse_below=0.1).collapse_below
        0.1

    """

    name = "attention"
    options = {"collapse_below": 0.05, "uniform_above": 0.995, "window": 10, "min_steps": 100}
    reads = frozenset({Attention.ENTROPY_RATIO})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.series: Series
        self.add_series("series", self.window)
        self.seen: dict[str, int]  # head site -> observed steps
        self.add_state("seen", {}, merge="sum", keyed=True)

    def run(self, view: StepView) -> Iterable[object]:
        """A finding per head that collapsed or stayed uniform."""
        for r in view.find(Attention.ENTROPY_RATIO):
            site = r.site
            self.series.add(site, float(r.value))  # type: ignore[arg-type]
            self.seen[site] = self.seen.get(site, 0) + 1
            if not self.series.full(site):
                continue
            values = self.series.values(site)
            median = self.series.median(site)
            head = site_kind(site).removeprefix("attention.") or site
            module = site_module(site) or "model"
            if median < self.collapse_below:
                yield self.finding(
                    "attention_collapse",
                    "warning",
                    view,
                    [site],
                    {"entropy_ratio": median},
                    f"{module} {head} attends to a single position (entropy ratio {median:.3f})",
                    "lower the learning rate, add attention dropout, or check the mask",
                )
            elif self.seen[site] >= self.min_steps and min(values) > self.uniform_above:
                yield self.finding(
                    "attention_uniform",
                    "info",
                    view,
                    [site],
                    {"entropy_ratio": median},
                    f"{module} {head} still attends uniformly (entropy ratio {median:.3f})",
                    "the head has not learned to select; check its inputs and the learning rate",
                )
