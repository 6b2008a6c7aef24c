"""The Optimizer lens: what the optimizer holds and does to each parameter."""

from __future__ import annotations

from typing import Any

from torch import nn

from layerscope.lenses.base import EmitContext, Lens, owns_parameters
from layerscope.lenses.statistics import QUANTILE_STATISTICS, VALUE_STATISTICS
from layerscope.records import Record
from layerscope.reduce.contract import Needs, SiteWindow
from layerscope.vocabulary import LAST, Key

#: How each optimizer state tensor is summarised: its statistic name and how to read it.
STATE_STATISTIC: dict[str, str] = {
    "exp_avg": "l2",
    "exp_avg_sq": "mean",
    "max_exp_avg_sq": "mean",
    "momentum_buffer": "l2",
    "square_avg": "mean",
    "grad_avg": "l2",
    "sum": "mean",
}
#: The key each optimizer state tensor is recorded under.
STATE_KEYS: dict[str, Key] = {name: Key(name, stat) for name, stat in STATE_STATISTIC.items()}

#: Step-size statistics read off the ``step_size_extremes`` site of a sampled parameter.
EXTREMES = frozenset({"min", "max"})


class Optimizer(Lens):
    """Optimizer state, effective step sizes, updates and learning rates.

    Needs the optimizer given to ``watch``. Records per parameter site ``p`` (named as the
    parameter gatherer names it: ``"fc1:weight"``, ``"lstm:weight_ih_l0"``):

    * every optimizer, unknown ones too: quantity ``"update"`` statistic ``"l2"`` (‖Δw‖ of this
      step) and ``"update_ratio"`` / ``"last"`` (‖Δw‖ / ‖w‖, w before the step);
    * state the optimizer keeps: ``"exp_avg"`` / ``"l2"``, ``"exp_avg_sq"`` / ``"mean"``
      (Adam, AdamW; ``"max_exp_avg_sq"`` / ``"mean"`` under amsgrad), ``"momentum_buffer"`` /
      ``"l2"`` (SGD with momentum or Nesterov, RMSprop with momentum), ``"square_avg"`` /
      ``"mean"`` and ``"grad_avg"`` / ``"l2"`` (RMSprop), ``"sum"`` / ``"mean"`` (Adagrad);
    * Adam and AdamW: ``"step_size"`` with this lens's statistics (default mean, min, max,
      median) of the bias-corrected effective step lr / (sqrt(v̂) + eps), and
      ``"eps_dominance"`` / ``"fraction"``: the share of elements where sqrt(v̂) < eps.
      ``min``, ``max`` and ``eps_dominance`` cover every element. The other statistics (mean,
      median, quantiles, std...) cover every element of parameters up to 16,384 elements and
      an evenly strided sample of larger ones, as every lens's quantiles do, so that an
      observed step needs no full-size temporary. A sampled quantile is typically within ~1 %
      in rank; the sampled mean within ~1 % of the step sizes' standard deviation, which is
      close once v̂ has settled but can be 10-20 % off in the first steps, when a few tiny v̂
      give step sizes near lr / eps that dominate the mean;

    and per parameter group ``i``: site ``"param_group[i]"``, quantity ``"lr"``, statistic
    ``"last"``.

    Args:
        **kwargs: selection, statistics of ``step_size`` and schedule, as for
            :class:`~layerscope.lenses.Lens`.

    Example:
        >>> Optimizer().statistics
        ('mean', 'min', 'max', 'median')

    """

    default_tag = "optimizer"
    kinds = ("optimizer.state", "optimizer.step_size", "optimizer.update", "optimizer.lr")
    default_statistics = ("mean", "min", "max", "median")
    #: ‖Δw‖ of the step, and ‖Δw‖ / ‖w‖ (w before the step), per parameter site.
    UPDATE = Key("update", "l2")
    UPDATE_RATIO = Key("update_ratio", LAST)
    #: The share of an Adam parameter's elements whose denominator is mostly eps.
    EPS_DOMINANCE = Key("eps_dominance", "fraction")
    #: Adam's mean second moment of a parameter.
    EXP_AVG_SQ = STATE_KEYS["exp_avg_sq"]
    #: The learning rate of each parameter group (site ``"param_group[i]"``).
    LR = Key("lr", LAST)
    #: The quantity of the effective step sizes; their statistic is the lens's statistic.
    STEP_SIZE = "step_size"

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        unknown = [s for s in self.statistics if s not in VALUE_STATISTICS]
        if unknown:
            raise ValueError(
                f"Optimizer: statistic {unknown[0]!r} does not apply to step sizes; choose from "
                f"{', '.join(VALUE_STATISTICS)}"
            )

    def selects(self, name: str, module: nn.Module) -> bool:
        """Modules with parameters of their own, and the root (for the learning rates)."""
        if name == "":
            return True
        return owns_parameters(module) and super().selects(name, module)

    def default_choice(self, module: nn.Module) -> bool:
        """Every module with parameters of its own, containers too (MultiheadAttention)."""
        return True

    def needs(self, kind: str) -> Needs:
        """Quantiles for step sizes when a quantile statistic is asked; nothing else."""
        wants = kind == "optimizer.step_size" and any(
            s in QUANTILE_STATISTICS for s in self.statistics
        )
        return Needs(quantiles=wants)

    def site_records(self, ctx: EmitContext, w: SiteWindow) -> list[Record]:
        """Turn one optimizer site into records."""
        s = w.summary
        if w.kind == "optimizer.lr":
            return [self.record(ctx, w.site, *self.LR, s.mean)]
        site, _, what = w.site.rpartition(".")
        if w.kind == "optimizer.step_size":
            # A sampled parameter's min and max over every element come from its extremes site.
            whole = ctx.windows.get(f"{w.site}_extremes", w)

            def value(name: str) -> float:
                return VALUE_STATISTICS[name](whole if name in EXTREMES else w)

            return [self.record(ctx, site, self.STEP_SIZE, n, value(n)) for n in self.statistics]
        if what == "step_size_extremes":
            return []  # read with the step_size site
        if what == "update":
            return [self.record(ctx, site, *self.UPDATE, s.l2)]
        if what == "update_ratio":
            return [self.record(ctx, site, *self.UPDATE_RATIO, s.mean)]
        if what == "eps_dominance":
            return [self.record(ctx, site, *self.EPS_DOMINANCE, s.mean)]
        key = STATE_KEYS.get(what)
        if key is None:
            return []
        return [self.record(ctx, site, *key, s.l2 if key.statistic == "l2" else s.mean)]
