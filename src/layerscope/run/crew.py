"""The installed gatherers: put in, told each new plan, called at step boundaries, taken out.

A gatherer whose hook raises is disabled at once and removed at the next step boundary (not
at once: the failing hook may be running inside torch's iteration over hooks); the others go
on observing.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from layerscope.distributed import check_parameters_readable
from layerscope.gatherers import GATHERERS, GatherContext, Gatherer, OptimizerGatherer
from layerscope.run.guard import Guard
from layerscope.run.plan import StepPlan


class Crew:
    """The gatherers of a run.

    Args:
        guard: the run's containment, for the warning a failed gatherer gives.

    Attributes:
        gatherers: the installed gatherers, in :data:`~layerscope.gatherers.GATHERERS` order.
        busy: those with something to observe in the current plan.
        replicated: site kinds that are the same on every rank (taken from rank 0).
        producers: site kind -> the gatherer that makes it.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self.gatherers: list[Gatherer] = []
        self.busy: list[Gatherer] = []
        self.replicated: set[str] = set()
        self.producers: dict[str, Gatherer] = {}
        self._enabled: Callable[[str, str], bool] = lambda module, kind: False
        self._dropped: list[Gatherer] = []  # failed, removed at the next boundary

    def install(self, context: GatherContext, model: nn.Module) -> None:
        """Install the gatherers of every site kind some lens reads."""
        every_kind = {kind for kinds in context.wanted.values() for kind in kinds}
        self._enabled = context.enabled
        check_parameters_readable(
            model, every_kind & {k for g in GATHERERS if g.replicated for k in g.kinds}
        )
        for kind in GATHERERS:
            if every_kind & set(kind.kinds):
                # Listed before its hooks go in, so that a failure further on removes them.
                gatherer = kind.__new__(kind)
                self.gatherers.append(gatherer)
                gatherer.__init__(context)  # type: ignore[misc]
        self.replicated.update(k for g in self.gatherers if g.replicated for k in g.kinds)
        self.producers = {k: g for g in self.gatherers for k in g.kinds}

    def summarized(self, module: str, kind: str) -> bool:
        """Whether the current plan has a live gatherer hand `kind` at `module` to the gate.

        The gate then summarizes it, non-finite count included: the finiteness gatherer need
        not read that tensor again.
        """
        producer = self.producers.get(kind)
        return producer is not None and not producer.failed and self._enabled(module, kind)

    def follow(self, plan: StepPlan) -> None:
        """Tell every gatherer the new plan; only those with work in it act at boundaries."""
        kinds = {kind for _, kind in plan}
        self.busy = [g for g in self.gatherers if kinds.intersection(g.kinds)]
        for gatherer in self.gatherers:
            try:
                gatherer.follow(plan)
            except Exception as error:  # noqa: BLE001 - a gatherer must never kill training
                gatherer.failed = True
                self.failed(gatherer, "follow", error)

    def stop(self) -> None:
        """Observe nothing more: the step pipeline broke."""
        self.busy = []
        for gatherer in self.gatherers:
            try:
                gatherer.follow({})
            except Exception:  # noqa: BLE001, S110 - stopping anyway
                pass

    def at_boundary(self, what: str) -> None:
        """Call each busy gatherer's ``before_step`` or ``after_step``, each one contained."""
        for gatherer in self.busy:
            if not gatherer.failed:
                try:
                    getattr(gatherer, what)()
                except Exception as error:  # noqa: BLE001 - a gatherer must never kill training
                    gatherer.failed = True
                    self.failed(gatherer, what, error)

    def failed(self, gatherer: Gatherer, where: str, error: Exception) -> None:
        """A gatherer's hook raised: warn once; its hooks go at the next step boundary."""
        self._guard.warn_once(
            f"{type(gatherer).__name__}.{where}",
            error,
            f"the gatherer is disabled (its sites {', '.join(gatherer.kinds)} are no longer "
            "observed)",
        )
        self._dropped.append(gatherer)

    def drop_failed(self) -> bool:
        """Remove the gatherers that failed since the last boundary; whether there were any.

        The gatherers left then follow the plan afresh: some left sites to those gone (the
        finiteness gatherer reads no tensor another gatherer summarizes).
        """
        if not self._dropped:
            return False
        dropped, self._dropped = self._dropped, []
        for gatherer in dropped:
            try:
                gatherer.remove()
            except Exception:  # noqa: BLE001, S110 - its hooks are inert already (failed)
                pass
        self.gatherers = [g for g in self.gatherers if not g.failed]
        self.busy = [g for g in self.busy if not g.failed]
        return True

    def renew_optimizer(self, context: GatherContext) -> None:
        """Map the parameters of a new optimizer (``context.optimizer``) afresh."""
        for i, gatherer in enumerate(self.gatherers):
            if isinstance(gatherer, OptimizerGatherer):
                gatherer.remove()
                self.gatherers[i] = OptimizerGatherer(context)
                self.producers.update(dict.fromkeys(OptimizerGatherer.kinds, self.gatherers[i]))

    def remove(self, quiet: bool = False) -> None:
        """Remove every gatherer's hooks; each failure is said once unless `quiet`."""
        for gatherer in self.gatherers:
            try:
                gatherer.remove()
            except Exception as error:  # noqa: BLE001 - the other hooks must go all the same
                if not quiet:
                    self._guard.warn_once(
                        f"{type(gatherer).__name__}.remove", error, "its hooks may remain"
                    )
        # Gatherers call back into the run's parts: dropping them breaks that reference
        # cycle, so the scope (and the model it holds) is freed with its last reference.
        self.gatherers = []
        self.busy = []
        self.producers = {}
