"""Human names for what the report draws: titles, axis labels and units, and model order.

Records name things for machines (``l2.last``, ``fc1:weight.grad``); a person reading a report
wants "L2 norm" and "fc1 weight gradient". Unknown names fall back to their words with the
underscores turned to spaces, so a new lens still gets a readable label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from layerscope.lenses import Attention, DeadUnits, GradientNorms, Loss, Optimizer
from layerscope.lenses.optimizer import STATE_KEYS
from layerscope.lenses.statistics import statistic_key
from layerscope.observation import site_kind, site_module
from layerscope.records import Record
from layerscope.vocabulary import HISTOGRAM, LAST, VALUE

#: quantity -> (human name, unit of its values)
QUANTITIES: dict[str, tuple[str, str]] = {
    Loss.LOSS.quantity: ("Loss", ""),
    VALUE: ("Values", "value"),
    GradientNorms.L2.quantity: ("L2 norm", "L2 norm"),
    statistic_key("rms").quantity: ("RMS", "root mean square"),
    GradientNorms.GLOBAL_L2.quantity: ("Global gradient L2 norm", "L2 norm"),
    GradientNorms.SHARE.quantity: ("Share of the gradient norm", "share of the total"),
    DeadUnits.DEAD_FRACTION.quantity: ("Dead units", ""),
    DeadUnits.ACTIVE_FRACTION.quantity: ("Active units", ""),
    Optimizer.UPDATE.quantity: ("Update", ""),
    Optimizer.UPDATE_RATIO.quantity: ("Update / weight ratio", "ratio"),
    STATE_KEYS["momentum_buffer"].quantity: ("Momentum buffer", ""),
    STATE_KEYS["exp_avg"].quantity: ("Adam first moment", ""),
    STATE_KEYS["exp_avg_sq"].quantity: ("Adam second moment", ""),
    Optimizer.LR.quantity: ("Learning rate", "learning rate"),
    "attention": ("Attention", ""),
    Attention.ENTROPY.quantity: ("Entropy", "nats"),
}

#: statistic -> (how it reads after the quantity's name, unit it gives the values, or "")
STATISTICS: dict[str, tuple[str, str]] = {
    LAST: ("", ""),
    VALUE: ("", ""),
    "mean": ("mean", ""),
    "std": ("standard deviation", ""),
    "median": ("median", ""),
    "iqr": ("interquartile range", ""),
    "min": ("minimum", ""),
    "max": ("maximum", ""),
    "l2": ("L2 norm", "L2 norm"),
    "fraction": ("(fraction)", "fraction of units"),
    "count": ("(count)", "units"),
    "zero_fraction": ("fraction exactly zero", "fraction of elements"),
    "nonfinite_fraction": ("fraction NaN or Inf", "fraction of elements"),
    HISTOGRAM: ("distribution", "value"),
}

#: what is observed at a site (the part after the colon) -> how it reads
KINDS: dict[str, str] = {
    "output": "output",
    "output.grad": "output gradient",
    "weight.grad": "weight gradient",
    "bias.grad": "bias gradient",
    "weight": "weight",
    "bias": "bias",
    "attention": "attention",
}

TAGS: dict[str, str] = {
    "loss": "Loss",
    "activations": "Activations (layer outputs)",
    "activity": "Unit activity (dead units)",
    "gradient_activity": "Gradient activity (units without gradient)",
    "gradients": "Gradients",
    "output_norms": "Output norms",
    "parameters": "Parameters",
    "distributions": "Distributions",
    "optimizer": "Optimizer",
    "findings": "Findings",
}


def _words(name: str) -> str:
    return name.replace("_", " ")


def kind_name(kind: str) -> str:
    """How a site's kind reads: ``"weight.grad"`` -> ``"weight gradient"``."""
    return KINDS.get(kind, _words(kind.replace(".grad", " gradient")))


def site_name(site: str, with_kind: bool = True) -> str:
    """How a site reads in a legend.

    Example:
        >>> site_name("fc1:weight.grad"), site_name("fc1:output", with_kind=False)
        ('fc1 weight gradient', 'fc1')

    """
    layer, kind = site_module(site), site_kind(site)
    if not kind or not with_kind:
        return layer or "model"
    return f"{layer} {kind_name(kind)}"


def tag_title(tag: str) -> str:
    """A figure's title for a tag."""
    return TAGS.get(tag, _words(tag).capitalize())


def quantity_title(quantity: str, statistic: str, kind: str = "") -> str:
    """A panel's title for a quantity and statistic, and the kind of site when given.

    Example:
        >>> quantity_title("l2", "last", "weight.grad")
        'L2 norm of weight gradients'
        >>> quantity_title("value", "zero_fraction", "output")
        'Outputs: fraction exactly zero'
        >>> quantity_title("l2", "last", "bias")
        'L2 norm of biases'

    """
    name = QUANTITIES.get(quantity, (_words(quantity).capitalize(), ""))[0]
    reads = STATISTICS.get(statistic, (_words(statistic), ""))[0]
    if quantity == VALUE and kind:
        subject = _plural(kind_name(kind)).capitalize()
        return f"{subject}: {reads}" if reads else subject
    title = f"{name} {reads}".strip() if reads else name
    if kind:
        title += f" of {_plural(kind_name(kind))}"
    return title


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith("s") else "s")


def unit(quantity: str, statistic: str) -> str:
    """The y label of a quantity and statistic: what its numbers measure.

    Example:
        >>> unit("dead", "fraction"), unit("loss", "last"), unit("value", "std")
        ('fraction of units', 'loss', 'value')

    """
    by_statistic = STATISTICS.get(statistic, ("", ""))[1]
    if by_statistic:
        return by_statistic
    by_quantity = QUANTITIES.get(quantity, ("", ""))[1]
    if by_quantity:
        return by_quantity
    if statistic in (LAST, VALUE):
        return _words(quantity)
    return _words(statistic)


def _natural(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def model_order(records: Iterable[Record]) -> list[str]:
    """Layer names in model order: as seen on the forward pass, the rest beside their parent.

    Forward outputs are observed in the order the model runs its modules; gradients arrive in
    reverse, so they only place layers no forward record names: right after their nearest
    ancestor that has one (``attn.out_proj`` after ``attn``), else at the end, in natural order
    (``layers.2`` before ``layers.10``).

    Example:
        >>> rs = [Record(0, 0, "g", "fc2:output.grad", "l2", "last", 1.0),
        ...       Record(0, 0, "p", "attn.out_proj:weight.grad", "l2", "last", 1.0),
        ...       Record(0, 0, "a", "attn:output", "l2", "last", 1.0),
        ...       Record(0, 0, "a", "fc2:output", "l2", "last", 1.0)]
        >>> model_order(rs)
        ['attn', 'attn.out_proj', 'fc2']

    """
    forward: dict[str, None] = {}
    others: set[str] = set()
    for r in sorted(records, key=lambda r: r.step):
        if not r.site:
            continue
        layer = site_module(r.site)
        if site_kind(r.site) == "output":
            forward.setdefault(layer, None)
        else:
            others.add(layer)
    place = {layer: float(i) for i, layer in enumerate(forward)}

    def key(layer: str) -> tuple[float, list[object]]:
        parts = layer.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:cut])
            if parent in place:
                return place[parent] + 0.5, _natural(layer)
        return float(len(place)), _natural(layer)

    rest = sorted(others.difference(forward), key=key)
    merged = [(place[layer], [], layer) for layer in forward]
    merged += [(*key(layer), layer) for layer in rest]
    return [layer for *_, layer in sorted(merged, key=lambda t: (t[0], t[1]))]


def sort_sites(sites: Sequence[str], order: Sequence[str]) -> list[str]:
    """Sites sorted by their layer's place in ``order``, then by kind."""
    place = {layer: i for i, layer in enumerate(order)}
    return sorted(sites, key=lambda s: (place.get(site_module(s), len(place)), _natural(s)))
