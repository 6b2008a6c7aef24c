"""The lens: which sites to look at, which statistics, when, and under which tag."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from layerscope.docs import error_message
from layerscope.gatherers import AttentionGatherer, ForwardGatherer, RecurrentGatherer
from layerscope.lenses.state import Stateful
from layerscope.lenses.statistics import (
    NORM_STATISTICS,
    NORMS_ONLY_STATISTICS,
    QUANTILE_STATISTICS,
    VALUE_STATISTICS,
    check_statistics,
    statistic_key,
)
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow

ModulePredicate = Callable[[str, nn.Module], bool]
Schedule = Callable[[int], bool]
StatisticReader = Callable[[SiteWindow], float]


@dataclass(frozen=True)
class EmitContext:
    """Everything a lens reads when it turns one step's windows into records."""

    step: int
    epoch: int
    windows: dict[str, SiteWindow]
    module_order: dict[str, int]  # module name -> depth index in named_modules() order


#: Modules whose output repeats their input: unchanged (Identity) or with random units zeroed
#: and the rest rescaled (dropout). A lens with no selection of its own skips them: their
#: statistics would repeat the module's before them at the cost of reading the tensor again.
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


#: Containers whose forward computes with their children's parameters without calling the
#: children: ``nn.MultiheadAttention`` reads ``out_proj.weight`` inside
#: ``F.multi_head_attention_forward``. Forward hooks on those children never fire, so a lens
#: with no selection of its own looks at the container (its output is the block's result), and
#: no lens reads the children's outputs (see :func:`never_called`); their parameters are read
#: as anyone's.
FUSED_CONTAINERS: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)

#: Site kinds that hooks on a module's own forward call produce: a module that is never called
#: (see :func:`never_called`) has none of them.
CALL_KINDS: frozenset[str] = frozenset(
    (*ForwardGatherer.kinds, *AttentionGatherer.kinds, *RecurrentGatherer.kinds)
)


def never_called(named_modules: Iterable[tuple[str, nn.Module]]) -> set[str]:
    """Names of the modules whose forward never runs: those inside a :data:`FUSED_CONTAINERS`."""
    pairs = list(named_modules)
    inside = {
        id(sub)
        for _, module in pairs
        if isinstance(module, FUSED_CONTAINERS)
        for sub in module.modules()
        if sub is not module
    }
    return {name for name, module in pairs if id(module) in inside}


def owns_parameters(module: nn.Module) -> bool:
    """Whether `module` holds parameters of its own, not only through its children."""
    return any(True for _ in module.parameters(recurse=False))


class Lens(Stateful):
    """Base class of every lens.

    A lens selects modules (by type, by name glob, or by predicate — all given conditions must
    hold), observes some kinds of sites on them (``"output"``, ``"weight.grad"``...), computes
    statistics, and emits records under its tag on the steps its schedule allows.

    Args:
        modules: module types to select (``nn.Linear`` or a tuple of types).
        names: glob pattern(s) over qualified module names (``"encoder.*"``).
        where: predicate ``(name, module) -> bool``.
        statistics: statistic names (see :data:`~layerscope.lenses.statistics.ALL_STATISTICS`).
        every: observe every N-th step (default: the ``every`` given to ``watch``).
        first: additionally observe each of the first K steps.
        schedule: a custom ``step -> bool``; replaces ``every``/``first`` when given.
        tag: the group its plots share; defaults to the lens's own.

    What a lens keeps across steps it declares with :meth:`add_state` (with the rule by which
    two instances' states merge); :meth:`state_dict`, :meth:`load_state_dict` and
    :meth:`merge_state` follow from the declarations. A stateless lens declares nothing.

    Example:
        >>> from torch import nn
        >>> import layerscope
        >>> lens = layerscope.lenses.Activations(modules=nn.Linear, statistics=("mean", "std"))
        >>> lens.tag
        'activations'
    """

    #: Default tag of the lens class.
    default_tag = "lens"
    #: Site kinds the lens reads.
    kinds: tuple[str, ...] = ("output",)
    #: Statistics used when none are given.
    default_statistics: tuple[str, ...] = ("mean",)
    #: Module types selected when no selection is given (None: every leaf module but the
    #: :data:`PASS_THROUGH` ones, and the :data:`FUSED_CONTAINERS` instead of their children).
    default_modules: tuple[type[nn.Module], ...] | None = None

    def __init__(
        self,
        *,
        modules: type[nn.Module] | Sequence[type[nn.Module]] | None = None,
        names: str | Sequence[str] | None = None,
        where: ModulePredicate | None = None,
        statistics: Sequence[str] | None = None,
        every: int | None = None,
        first: int = 0,
        schedule: Schedule | None = None,
        tag: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if isinstance(modules, type):
            modules = (modules,)
        if modules is not None:
            modules = tuple(modules)
            for m in modules:
                if not (isinstance(m, type) and issubclass(m, nn.Module)):
                    raise ValueError(f"{owner}: modules must be nn.Module subclasses, got {m!r}")
        self.modules = modules
        self.names = (names,) if isinstance(names, str) else (tuple(names) if names else None)
        if where is not None and not callable(where):
            raise ValueError(f"{owner}: where must be a callable (name, module) -> bool")
        self.where = where
        self.statistics = check_statistics(
            owner, tuple(statistics) if statistics is not None else self.default_statistics
        )
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"{owner}: every must be a positive integer, got {every!r}")
        if not isinstance(first, int) or first < 0:
            raise ValueError(f"{owner}: first must be a non-negative integer, got {first!r}")
        if schedule is not None and not callable(schedule):
            raise ValueError(f"{owner}: schedule must be a callable step -> bool")
        self.every = every
        self.first = first
        self.schedule = schedule
        self.tag = tag or self.default_tag
        self._readers_of: tuple[str, ...] | None = None  # the statistics _reader_list is for
        self._reader_list: list[tuple[str, str, StatisticReader | None]] = []

    # -- selection ---------------------------------------------------------------------------
    def selects(self, name: str, module: nn.Module) -> bool:
        """Whether this lens looks at `module` (named `name`)."""
        types = self.modules if self.modules is not None else self.default_modules
        if types is not None and not isinstance(module, types):
            return False
        if self.selects_by_default and not self.default_choice(module):
            return False
        if self.names is not None and not any(fnmatch.fnmatchcase(name, p) for p in self.names):
            return False
        return self.where is None or bool(self.where(name, module))

    @property
    def selects_by_default(self) -> bool:
        """Whether no selection was given (no ``modules``, ``names``, ``where``, default types)."""
        return (
            self.modules is None
            and self.default_modules is None
            and self.names is None
            and self.where is None
        )

    def default_choice(self, module: nn.Module) -> bool:
        """Whether a lens with no selection of its own looks at `module`.

        Leaf modules that compute something (containers repeat their children, and
        :data:`PASS_THROUGH` modules their input), and :data:`FUSED_CONTAINERS`, whose children
        are never called (:meth:`kinds_by_module` drops those children's outputs).
        """
        if isinstance(module, FUSED_CONTAINERS):
            return True
        return not isinstance(module, PASS_THROUGH) and not any(True for _ in module.children())

    def kinds_at(self, module: nn.Module) -> tuple[str, ...]:
        """The site kinds this lens reads at a module it selected (all of :attr:`kinds`)."""
        return self.kinds

    def select(self, named_modules: Iterable[tuple[str, nn.Module]]) -> list[str]:
        """Names of the selected modules; ValueError when the selection matches nothing."""
        chosen = [name for name, module in named_modules if self.selects(name, module)]
        if not chosen:
            raise ValueError(
                error_message(
                    f"{self!r} selects no module of this model; {self._selection_hint()}",
                    "no-module-selected",
                )
            )
        return chosen

    def kinds_by_module(
        self, named_modules: Iterable[tuple[str, nn.Module]]
    ) -> dict[str, tuple[str, ...]]:
        """The site kinds this lens reads at each module it selects, in model order.

        :meth:`kinds_at` of each module of :meth:`select`, less the :data:`CALL_KINDS` at
        modules that are never called (inside a :data:`FUSED_CONTAINERS`); a module left with
        no kind is dropped.

        Raises:
            ValueError: the selection matches nothing, or only modules that are never called.
        """
        pairs = list(named_modules)
        modules = dict(pairs)
        uncalled = never_called(pairs)
        chosen = self.select(pairs)
        out: dict[str, tuple[str, ...]] = {}
        for name in chosen:
            kinds = self.kinds_at(modules[name])
            if name in uncalled:
                kinds = tuple(kind for kind in kinds if kind not in CALL_KINDS)
            if kinds:
                out[name] = kinds
        if not out:
            raise ValueError(
                error_message(
                    f"{self!r} selects only modules that are never called on their own: "
                    f"{', '.join(chosen)}, inside "
                    f"{' or '.join(f'nn.{t.__name__}' for t in FUSED_CONTAINERS)}, which "
                    "computes with their parameters without calling them, so they have no "
                    "output to read; select the container instead",
                    "no-module-selected",
                )
            )
        return out

    def _selection_hint(self) -> str:
        parts = []
        if self.modules is not None:
            parts.append(f"modules={[m.__name__ for m in self.modules]}")
        if self.names is not None:
            parts.append(f"names={list(self.names)}")
        if self.where is not None:
            parts.append("a where= predicate")
        if not parts:
            return "it needs modules of its default types or leaf modules"
        return "check " + ", ".join(parts)

    # -- schedule ----------------------------------------------------------------------------
    def active(self, step: int, default_every: int = 1) -> bool:
        """Whether the lens observes `step` (0-based)."""
        if self.schedule is not None:
            return bool(self.schedule(step))
        if step < self.first:
            return True
        return step % (self.every or default_every) == 0

    # -- what to compute ---------------------------------------------------------------------
    def needs(self, kind: str) -> Needs:
        """What the reducer must compute at a site of `kind` for this lens.

        Quantiles and histograms when a statistic asks for them, and the summary's moments
        unless every statistic is one a norms-only summary answers (``l2``, ``rms``,
        ``nonfinite_fraction``). A subclass whose records read other fields of the window
        asks for them here (``Needs()`` asks for the whole summary).
        """
        return Needs(
            quantiles=any(s in QUANTILE_STATISTICS for s in self.statistics),
            histogram="histogram" in self.statistics,
            moments=any(s not in NORMS_ONLY_STATISTICS for s in self.statistics),
        )

    def needs_at(self, module: str, kind: str) -> Needs:
        """What the reducer must compute at `module`'s site of `kind`; defaults to :meth:`needs`.

        Lenses whose needs depend on the module (a threshold count only on tanh outputs)
        override this.
        """
        return self.needs(kind)

    def emit(self, ctx: EmitContext, sites: Iterable[str]) -> list[Record]:
        """Records for the given sites of this step (sites it selected and that were seen)."""
        out: list[Record] = []
        for site in sites:
            w = ctx.windows.get(site)
            if w is None or w.summary.size == 0:
                continue
            out.extend(self.site_records(ctx, w))
        return out

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """Records of one site; the default reads each statistic off the window."""
        step, epoch, tag, site = ctx.step, ctx.epoch, self.tag, w.site
        out = []
        for quantity, statistic, read in self._readers():
            if read is not None:
                out.append(Record(step, epoch, tag, site, quantity, statistic, float(read(w))))
            elif w.histogram is not None:  # the histogram, when the reducer made one
                out.append(Record(step, epoch, tag, site, quantity, statistic, None, w.histogram))
        return out

    def _readers(self) -> list[tuple[str, str, StatisticReader | None]]:
        """(quantity, statistic, reader) of each statistic, in order; built once per statistics.

        Norms are recorded as quantity NAME statistic "last", other statistics as quantity
        "value"; the histogram has no scalar reader.
        """
        if self._readers_of is not self.statistics:
            self._reader_list = [_reader(name) for name in self.statistics]
            self._readers_of = self.statistics
        return self._reader_list

    def review(self, ctx: EmitContext, records: list[Record]) -> list[Record]:
        """Records judging the whole step, given every record the lenses emitted for it.

        Called after every active lens's :meth:`emit`; lenses that diagnose (health checks)
        override it. The default adds nothing.
        """
        return []

    def record(
        self,
        ctx: EmitContext,
        site: str,
        quantity: str,
        statistic: str,
        value: float | None = None,
        histogram: object = None,
    ) -> Record:
        """A record of this lens at the context's step."""
        # Positional: a run builds hundreds of records a step, and keywords cost more.
        return Record(
            ctx.step,
            ctx.epoch,
            self.tag,
            site,
            quantity,
            statistic,
            None if value is None else float(value),
            histogram,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self.tag!r})"


def _reader(name: str) -> tuple[str, str, StatisticReader | None]:
    """The quantity and statistic a statistic is recorded under, and how to read it."""
    quantity, statistic = statistic_key(name)
    return quantity, statistic, NORM_STATISTICS.get(name) or VALUE_STATISTICS.get(name)
