"""The default lenses: what a one-line :func:`layerscope.watch` observes.

Above both the lenses and the health checks, since the set ends with the Health lens that judges
what the others recorded.
"""

from __future__ import annotations

from layerscope.health import CHECKS, Health, NonFinite
from layerscope.lenses import (
    Activations,
    DeadUnits,
    Distributions,
    GradientDeath,
    GradientNorms,
    Lens,
    Loss,
    Optimizer,
    Parameters,
)


def default_lenses(optimizer: bool = False, every: int = 1) -> list[Lens]:
    """The lenses a one-line ``watch`` uses: a sensible overview of a training run.

    Loss; output mean, std, min and max; gradient norms (weights, biases, outputs, global and
    per-layer shares); parameter norms; dead units and gradient death; output and
    weight-gradient histograms; with an optimizer its state, update ratios and median step
    size; and Health. Build any lens yourself for more (``Activations()`` alone also records
    zero and non-finite fractions, ``OutputNorms()`` L2 and RMS norms).

    Most lenses observe every `every`-th step; parameter values and optimizer state, which move
    slowly and cost a full read of every parameter, ten times less often, and distributions
    (median, IQR, histograms) fifty times less often. Raising `every` so thins them all alike,
    except the search for non-finite values (:class:`~layerscope.health.NonFinite`), which
    runs on every step: a NaN born on a skipped step would otherwise be seen only once it has
    spread everywhere.

    Args:
        optimizer: add the :class:`~layerscope.lenses.Optimizer` lens (``watch`` does when it
            is given an optimizer).
        every: the period of the every-step lenses (``watch`` passes its own ``every``).

    Example:
        >>> [lens.tag for lens in default_lenses()][:3]
        ['loss', 'activations', 'gradients']
        >>> [type(lens).__name__ for lens in default_lenses(optimizer=True)][-3:]
        ['Optimizer', 'NonFinite', 'Health']
        >>> [(lens.tag, lens.every) for lens in default_lenses(every=10) if lens.every]
        [('parameters', 100), ('distributions', 500), ('health', 1)]
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(
            f"layerscope.default_lenses: every must be a positive integer, got {every!r}"
        )
    # Few statistics per module, none that another default repeats, so that a run can be
    # browsed: a 6-layer transformer gets ~16 names a layer instead of ~50. (Output norms are
    # sqrt(mean² + std²); zeros and non-finite values are what DeadUnits and Health report.)
    lenses: list[Lens] = [
        Loss(),
        Activations(statistics=("mean", "std", "min", "max")),
        GradientNorms(),
        # weights move slowly: a tenth of the steps is plenty; their norm is what updates scale
        Parameters(every=10 * every, statistics=("l2",)),
        DeadUnits(),
        GradientDeath(),
        Distributions(every=50 * every, statistics=("histogram",)),
    ]
    if optimizer:  # optimizer state moves as slowly as the weights; reading it costs as much
        lenses.append(Optimizer(every=10 * every, statistics=("median",)))
    # NaN origin on every step, whatever `every`: a NaN spreads through the weights at once
    lenses.append(NonFinite())
    # last: it judges what the others recorded
    return [*lenses, Health(checks=[name for name in CHECKS if name != "nan_origin"])]
