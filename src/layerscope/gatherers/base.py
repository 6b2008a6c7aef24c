"""What every gatherer gets from the Scope, and the small protocol it implements."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from layerscope.observation import site_name, tensor_leaves
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.vectors import VectorRows


class Observe(Protocol):
    """``observe(module_name, kind, site, tensor, count=None, rows=None)``: hand one tensor over.

    For a vector a gatherer reduced itself, `count` is how many items it summarizes: a number, or
    a host array broadcastable to it (one per timestep along the last axis), 1 when None; `rows`
    declares how each of its rows merges across calls, steps and ranks (a mean weighted by the
    counts, a norm of norms, a pooled standard deviation: :class:`VectorRows`). Without `rows`,
    every element is a mean.
    """

    def __call__(  # noqa: D102
        self,
        module: str,
        kind: str,
        site: str,
        tensor: torch.Tensor,
        count: Any = None,  # noqa: ANN401
        rows: VectorRows | None = None,
    ) -> None: ...


#: observe_summary(module_name, kind, site, summary): hand a summary the gatherer reduced itself.
ObserveSummary = Callable[[str, str, str, SiteSummary], None]
#: failed(gatherer, where, error): a gatherer's hook raised; the scope disables that gatherer.
Failed = Callable[["Gatherer", str, Exception], None]
_Hook = TypeVar("_Hook", bound=Callable[..., Any])


def _warn_failed(gatherer: Gatherer, where: str, error: Exception) -> None:
    warnings.warn(
        f"layerscope: {type(gatherer).__name__}.{where} failed ({error!r}); the gatherer is "
        "disabled and training goes on",
        RuntimeWarning,
        stacklevel=4,
    )


@dataclass
class GatherContext:
    """The scope's side of a gatherer.

    Attributes:
        modules: every module of the model by qualified name, in ``named_modules()`` order.
        wanted: module name -> the site kinds some lens reads there.
        observe: the callback that reduces a tensor at once (it never stores it).
        enabled: ``enabled(module, kind)``, whether that site kind of that module is observed
            on the current step (its lenses' schedules). Check it before computing anything.
        optimizer: the optimizer given to ``watch``, if any.
        lenses: module name -> the lenses that selected it (gatherers read lens options there,
            e.g. which output leaf holds attention weights).
        summary_suffices: ``summary_suffices(module, kind)``, whether on the current step that
            site kind is observed, a :class:`~layerscope.stats.SiteSummary` is all its
            lenses read (no quantiles, histograms, activity, counts or values) and the scope reduces
            CPU tensors on the host. Then the gatherer may reduce a CPU tensor itself...
        observe_summary: ... and hand the result over with this callback instead of ``observe``.
        summarized: ``summarized(module, kind)``, whether on the current step a live gatherer
            hands that site kind to the scope, which summarizes it: the summary's non-finite
            count is then known, and the finiteness gatherer need not read the tensor again.
        failed: called once when one of the gatherer's :func:`contained` hooks raises.
    """

    modules: dict[str, nn.Module]
    wanted: dict[str, set[str]]
    observe: Observe
    enabled: Callable[[str, str], bool]
    optimizer: torch.optim.Optimizer | None = None
    lenses: dict[str, list[Any]] = field(default_factory=dict)
    summary_suffices: Callable[[str, str], bool] = lambda module, kind: False
    observe_summary: ObserveSummary = lambda module, kind, site, summary: None
    summarized: Callable[[str, str], bool] = lambda module, kind: False
    failed: Failed = _warn_failed

    def modules_wanting(self, *kinds: str) -> dict[str, nn.Module]:
        """Modules where some lens reads one of `kinds`, in model order."""
        return {
            name: module
            for name, module in self.modules.items()
            if self.wanted.get(name, set()) & set(kinds)
        }


class Gatherer:
    """Base of every gatherer: owns its hooks and gives them back in :meth:`remove`.

    A subclass names the site kinds it produces in ``kinds``, installs its hooks in
    ``__init__`` from the :class:`GatherContext`, and may act at the step boundary:
    :meth:`before_step` runs before the optimizer updates the parameters (or at
    ``scope.step()`` without an optimizer), :meth:`after_step` right after the update. The
    scope calls these only on steps that observe one of the gatherer's kinds. Every method a
    hook calls is decorated with :func:`contained`: the hook runs inside the user's forward or
    backward, where an exception would kill training.
    """

    #: Site kinds this gatherer produces.
    kinds: tuple[str, ...] = ()
    #: Whether its sites hold the same values on every data-parallel (DDP) rank — parameters
    #: and all-reduced gradients do, activations do not. Replicated sites are not merged
    #: across ranks; rank 0's values are written. Sites observed as DTensors (FSDP2's shards)
    #: are merged whatever this says.
    replicated: bool = False
    #: Set when one of its hooks raised: its hooks do nothing from then on.
    failed: bool = False

    def __init__(self, context: GatherContext) -> None:
        self.context = context

    def before_step(self) -> None:
        """Observe what is only complete at the end of backward (accumulated gradients)."""

    def after_step(self) -> None:
        """Observe what the optimizer's update produced (its state, the update itself)."""

    def follow(self, plan: Container[tuple[str, str]]) -> None:
        """Get ready for the steps that observe `plan`'s ``(module, kind)`` pairs.

        Called before the first step of each new plan. A gatherer whose hooks fire on every
        call keeps them only where the plan observes: an idle step then costs nothing there.
        """

    def remove(self) -> None:
        """Remove every hook this gatherer installed."""


def contained(hook: _Hook) -> _Hook:
    """Make a gatherer's hook method harmless to training.

    If it raises, the gatherer is marked failed, the scope hears of it once
    (``context.failed``), and this hook and its siblings return None (leaving outputs and
    gradients as they were) from then on.
    """

    @functools.wraps(hook)
    def run(self: Gatherer, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        if self.failed:
            return
        try:
            hook(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - a hook must never kill training
            self.failed = True
            self.context.failed(self, hook.__name__, error)

    return run  # type: ignore[return-value]


def outside_compile(body: _Hook) -> _Hook:
    """A forward hook that runs `body`, out of the traced graph while torch.compile traces.

    Traced, the body's calls into the C++ engine would fail or break the graph at random
    places; disabled for the trace, it runs eagerly at one graph break per hooked module (see
    the forward gatherer's docstring). In eager mode it is called directly: the disabled
    wrapper would cost about a microsecond a call.
    """
    untraced = torch.compiler.disable(body)

    @functools.wraps(body)
    def hook(self: Gatherer, *args: Any) -> None:  # noqa: ANN401
        if torch.compiler.is_compiling():
            untraced(self, *args)
        else:
            body(self, *args)

    return hook  # type: ignore[return-value]


#: hook(module_name, gradient_site, gradient): a gatherer's hook on an output's gradient.
GradHook = Callable[[str, str, torch.Tensor], None]


class OutputLeaves:
    """Per module and leaf of its output: the output's site and the hook for its gradient.

    Made once per leaf, not on every call: most modules return one tensor, and naming its sites
    and binding its hook would cost more than handing the tensor over. `suffix` follows both
    site names (``":finite"`` for the finiteness gatherer's).
    """

    def __init__(self, grad_hook: GradHook, suffix: str = "") -> None:
        self._grad_hook: GradHook | None = grad_hook
        self._suffix = suffix
        self._made: dict[tuple[str, str], tuple[str, Callable[[torch.Tensor], None]]] = {}

    def __call__(self, name: str, path: str) -> tuple[str, Callable[[torch.Tensor], None]]:
        """The output site of leaf `path` of module `name`'s output, and its gradient hook."""
        leaf = self._made.get((name, path))
        if leaf is None:
            grad_site = site_name(name, "output.grad", path) + self._suffix
            leaf = self._made[name, path] = (
                site_name(name, "output", path) + self._suffix,
                functools.partial(self._grad_hook, name, grad_site),  # type: ignore[arg-type]
            )
        return leaf

    def of(
        self,
        name: str,
        output: Any,
        result_first: bool,  # noqa: ANN401 - any module output
    ) -> Sequence[tuple[torch.Tensor, str, Callable[[torch.Tensor], None]]]:
        """``(tensor, output site, gradient hook)`` of each tensor leaf of module `name`'s output.

        `result_first`: the module returns ``(result, extras...)``; only the result is read.
        """
        if result_first and isinstance(output, tuple) and output:
            output = output[0]
        if isinstance(output, torch.Tensor):  # the usual case: no walk over the output
            return ((output, *self(name, "")),)
        return [(tensor, *self(name, path)) for path, tensor in tensor_leaves(output)]

    def release(self) -> None:
        """Drop the hooks made: they refer back to their gatherer (and its scope)."""
        self._made.clear()
        self._grad_hook = None
