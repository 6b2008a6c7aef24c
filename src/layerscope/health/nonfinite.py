"""NaN / Inf origin: the first site, in the order the step computed them, that held one."""

from __future__ import annotations

from collections.abc import Iterable

from layerscope.health.base import Check, StepView, short
from layerscope.health.findings import Finding

#: Site kinds in the order a step computes them: forward, backward, then the rest.
ORDER = ("output", "output.grad", "weight.grad", "bias.grad", "weight", "bias", "loss")
_RANK = {kind: i for i, kind in enumerate(ORDER)}


class NanOriginCheck(Check):
    """Names where NaN or Inf first appeared: one finding for the first site that held one.

    Outputs are searched in forward order (the order the forward hooks fired), then output
    gradients in backward order, then parameter gradients, parameters and the loss. While
    non-finite values persist (they spread through the weights after an update) the first
    origin stays the finding; after a step with none the check re-arms.

    Example:
        >>> NanOriginCheck().name
        'nan_origin'

    """

    name = "nan_origin"
    options: dict[str, object] = {}
    reads = frozenset()  # the windows only

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self._origin: Finding | None = None

    def run(self, view: StepView) -> Iterable[Finding]:
        """The origin finding while any observed site is non-finite."""
        hits = [
            (_RANK[w.kind], i, site, w)
            for i, (site, w) in enumerate(view.windows.items())
            if w.summary.nonfinite > 0 and w.kind in _RANK  # the model's own tensors, not
        ]  # derived ones (an update ratio of a zero-initialised bias is 0/0 by definition)
        if not hits:
            if any(w.kind != "loss" for w in view.windows.values()):
                self._origin = None  # a whole clean step, not just a late loss: re-arm
            return
        if self._origin is None:
            _, _, site, w = min(hits, key=lambda h: h[:2])
            where = "backward pass" if w.kind.endswith(".grad") else "forward pass"
            self._origin = self.finding(
                "nan_origin",
                "error",
                view,
                [site],
                {"nonfinite": float(w.summary.nonfinite), "size": float(w.summary.size)},
                f"non-finite values first appeared at {site} ({short(site)}, {where}) "
                f"at step {view.step}: {w.summary.nonfinite} of {w.summary.size} elements",
                "look for log/sqrt/division of non-positive values there, or lower the "
                "learning rate; torch.autograd.detect_anomaly() pinpoints the op",
            )
        yield self._origin
