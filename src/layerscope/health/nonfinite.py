"""NaN / Inf origin: the first site, in the order the step computed them, that held one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from layerscope.gatherers.nonfinite import FINITE_KINDS, FINITE_SUFFIX
from layerscope.health.base import Check, StepView, short
from layerscope.health.findings import Finding, finding_from_plain, finding_to_plain
from layerscope.reduce.contract import SiteWindow

#: Site kinds in the order a step computes them: forward, backward, then the rest.
ORDER = ("output", "output.grad", "weight.grad", "bias.grad", "weight", "bias", "loss")
_RANK = {kind: i for i, kind in enumerate(ORDER)}
_RANK.update({f"{kind}.finite": i for kind, i in _RANK.items()})


#: The kinds the finiteness gatherer counts, which it leaves to their summaries on the steps
#: that summarize them.
_COUNTED = frozenset(kind.removesuffix(".finite") for kind in FINITE_KINDS)


def _counted(w: SiteWindow, selected: Mapping[str, object]) -> bool:
    """Whether a step with finiteness counts reads `w`.

    A count, the loss, or the summary of a site of the modules the counts cover (`selected`),
    which the finiteness gatherer left to that summary.
    """
    return (
        w.kind.endswith(".finite")
        or w.kind == "loss"
        or (w.kind in _COUNTED and w.module in selected)
    )


def nonfinite_of(w: SiteWindow) -> tuple[int, int]:
    """(non-finite elements, elements) of a window: a finiteness count's, or its summary's."""
    if w.kind.endswith(".finite"):
        if w.values is None or w.values.size < 2:
            return 0, 0
        # values is the mean of the step's [nonfinite, size] vectors, over values_count calls
        calls = float(w.values_count[0]) if w.values_count is not None else 1.0
        return round(float(w.values[0]) * calls), round(float(w.values[1]) * calls)
    return w.summary.nonfinite, w.summary.size


def _origin_plain(origin: Finding | None) -> dict[str, Any] | None:
    return None if origin is None else finding_to_plain(origin)


def _origin_finding(plain: Mapping[str, Any] | None) -> Finding | None:
    return None if plain is None else finding_from_plain(plain)


class NanOriginCheck(Check):
    """Names where NaN or Inf first appeared: one finding for the first site that held one.

    Outputs are searched in forward order (the order the forward hooks fired), then output
    gradients in backward order, then parameter gradients, parameters and the loss. While
    non-finite values persist (they spread through the weights after an update) the first
    origin stays the finding; after a step with none the check re-arms. It reads the
    finiteness counts of the :class:`~layerscope.health.NonFinite` lens, taken on every step,
    and, where a step has none, the summaries of the sites other lenses observed.

    Example:
        >>> NanOriginCheck().name
        'nan_origin'

    """

    name = "nan_origin"
    options: dict[str, object] = {}
    reads = frozenset()  # the windows only

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        # The origin while non-finite values persist; the first instance's (the earlier) wins.
        self.origin: Finding | None
        self.add_state("origin", None, merge="first", save=_origin_plain, load=_origin_finding)

    def run(self, view: StepView) -> Iterable[Finding]:
        """The origin finding while any observed site is non-finite."""
        # The model's own tensors, not derived ones (an update ratio of a zero-initialised bias
        # is 0/0 by definition); finiteness counts where the step has them.
        windows = [(site, w) for site, w in view.windows.items() if w.kind in _RANK]
        if any(w.kind.endswith(".finite") for _, w in windows):
            # The counts, the loss, and the summaries of the sites the counts were not taken
            # at because the step summarized them (the data is read once).
            windows = [(s, w) for s, w in windows if _counted(w, view.module_types)]
        hits = []
        for i, (site, w) in enumerate(windows):
            bad, size = nonfinite_of(w)
            if bad > 0:
                hits.append((_RANK[w.kind], i, site.removesuffix(FINITE_SUFFIX), bad, size, w))
        if not hits:
            if any(w.kind != "loss" for w in view.windows.values()):
                self.origin = None  # a whole clean step, not just a late loss: re-arm
            return
        if self.origin is None:
            _, _, site, bad, size, w = min(hits, key=lambda h: h[:2])
            where = "backward pass" if ".grad" in w.kind else "forward pass"
            self.origin = self.finding(
                "nan_origin",
                "error",
                view,
                [site],
                {"nonfinite": float(bad), "size": float(size)},
                f"non-finite values first appeared at {site} ({short(site)}, {where}) "
                f"at step {view.step}: {bad} of {size} elements",
                "look for log/sqrt/division of non-positive values there, or lower the "
                "learning rate; torch.autograd.detect_anomaly() pinpoints the op",
            )
        yield self.origin
