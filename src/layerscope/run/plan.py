"""The plan: which lenses observe a step, and which (module, kind) sites they read, and how.

Each lens selects modules and the site kinds it reads there; its schedule says on which steps
it is active. A step's plan maps each observed (module, kind) to what its lenses need of it
(:class:`~layerscope.reduce.contract.Needs`). A plan depends only on which lenses are active,
so each combination is worked out once; the parts that follow the plan (the gate, the
gatherers, the pass tracker) hear of it only when it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from layerscope.docs import error_message
from layerscope.gatherers import GATHERERS
from layerscope.lenses import Lens
from layerscope.reduce.contract import NOTHING, Needs, SiteWindow
from layerscope.run.guard import Guard

#: A step's plan: (module, kind) -> what its lenses need of that site kind.
StepPlan = dict[tuple[str, str], Needs]


class Plan:
    """What the lenses observe, step by step.

    Args:
        lenses: the run's lenses, in order.
        modules: every module of the model by qualified name.
        every: the scope's ``every``, for lenses without a schedule of their own.
        guard: the run's containment; no plan is followed once the pipeline broke.

    Attributes:
        kinds_at: lens id -> module name -> the site kinds the lens reads there.
        active: the current step's plan.
        failed: sites a statistic could not read; no plan observes them again.
        reviewers: ids of the lenses that judge a step as a whole (override ``review``).
        followers: called with each new plan, in order.
    """

    def __init__(
        self, lenses: Sequence[Lens], modules: dict[str, nn.Module], every: int, guard: Guard
    ) -> None:
        self.lenses = list(lenses)
        self.kinds_at = {id(lens): lens.kinds_by_module(modules.items()) for lens in self.lenses}
        self._modules = modules
        self._schedules = [(lens.first, lens.every or every, lens.schedule) for lens in lenses]
        self._last_active: tuple[int, tuple[int, ...]] = (-1, ())
        self._static = all(schedule is None for _, _, schedule in self._schedules)
        self._guard = guard
        self.active: StepPlan = {}
        self._plans: dict[tuple[int, ...], StepPlan] = {}
        # The sites of a step's windows (in order) -> the sites each lens reads of them.
        self._lens_sites: dict[tuple[str, ...], dict[int, tuple[str, ...]]] = {}
        # Only lenses that override review() judge a step: the others need no copy of its records.
        self.reviewers = {id(lens) for lens in self.lenses if type(lens).review is not Lens.review}
        self.failed: set[tuple[str, str]] = set()
        self.followers: list[Callable[[StepPlan], None]] = []

    def wanted(self) -> dict[str, set[str]]:
        """Module name -> every site kind some lens reads there.

        Raises:
            ValueError: a lens reads a site kind no gatherer produces.
        """
        known = {"loss", *(kind for g in GATHERERS for kind in g.kinds)}
        wanted: dict[str, set[str]] = {}
        for lens in self.lenses:
            for kind in lens.kinds:
                if kind not in known:
                    raise ValueError(
                        error_message(
                            f"{lens!r} reads site kind {kind!r}, which no gatherer produces; "
                            f"known kinds: {', '.join(sorted(known))}",
                            "unknown-kind",
                        )
                    )
            for name, kinds in self.kinds_at[id(lens)].items():
                wanted.setdefault(name, set()).update(kinds)
        return wanted

    def lenses_at(self, names: Sequence[str]) -> dict[str, list[Lens]]:
        """Module name -> the lenses that selected it."""
        return {
            name: [lens for lens in self.lenses if name in self.kinds_at[id(lens)]]
            for name in names
        }

    def watched_modules(self) -> int:
        """How many modules some lens observes (the root only when it is the whole model)."""
        alone = len(self._modules) == 1
        return len(
            {
                m
                for at in self.kinds_at.values()
                for m, k in at.items()
                if k != ("loss",) and (m or alone)
            }
        )

    def follow_step(self, step: int, afresh: bool = False) -> None:
        """Make the plan of `step` the active one; tell the followers when it changed.

        Args:
            step: the step about to be observed.
            afresh: tell the followers even when the plan is the same (a gatherer was replaced).
        """
        if self._guard.broken:
            return
        active = self.active_lenses(step)
        plan = self._plans.get(active)
        if plan is None:
            plan = self._plans[active] = {}
            for lens in (self.lenses[i] for i in active):
                for name, kinds in self.kinds_at[id(lens)].items():
                    for kind in kinds:
                        key = (name, kind)
                        if key not in self.failed:
                            plan[key] = plan.get(key, NOTHING) | lens.needs_at(name, kind)
        if plan is not self.active or afresh:
            self.active = plan
            for follow in self.followers:
                follow(plan)

    def stop(self) -> None:
        """Observe nothing from now on: the pipeline broke (the followers are told apart)."""
        self.active = {}

    def active_lenses(self, step: int) -> tuple[int, ...]:
        """Indices of the lenses that observe `step` (:meth:`Lens.active`, without a call each).

        A step is asked about twice, when it begins and when its records are emitted: the
        last answer is kept, unless a lens has a schedule of its own (a user's callable,
        asked each time).
        """
        last = self._last_active
        if last[0] == step:
            return last[1]
        active = tuple(
            i
            for i, (first, every, schedule) in enumerate(self._schedules)
            if (schedule(step) if schedule else step < first or step % every == 0)
        )
        if self._static:
            self._last_active = (step, active)
        return active

    def site_failed(self, module: str, kind: str) -> None:
        """A statistic could not read this site kind: no plan observes it again."""
        self.failed.add((module, kind))
        for plan in self._plans.values():
            plan.pop((module, kind), None)

    def sites_per_lens(self, windows: dict[str, SiteWindow]) -> dict[int, tuple[str, ...]]:
        """Lens id -> the sites of `windows` it reads, in window order.

        A run's steps see a handful of site sets (parameters and distributions join on some
        steps), so the filtering is done once per set rather than for every lens every step.
        """
        sites = tuple(windows)
        found = self._lens_sites.get(sites)
        if found is None:
            if len(self._lens_sites) >= 64:  # a model whose sites keep changing: stay bounded
                self._lens_sites.clear()
            found = self._lens_sites[sites] = {
                id(lens): tuple(
                    site
                    for site, w in windows.items()
                    if w.kind in self.kinds_at[id(lens)].get(w.module, ())
                )
                for lens in self.lenses
            }
        return found
