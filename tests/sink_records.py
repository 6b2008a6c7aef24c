"""Records shaped like the default lenses' output, built from known numbers."""

from __future__ import annotations

import pytest

from layerscope.records import HistogramValue, Record

SITES = ("fc1:output", "fc2:output", "fc3:output")
STEPS = (0, 1, 2, 3, 4)


def activation_value(site_index: int, step: int, statistic: str) -> float:
    """A distinct, known number per site, step and statistic."""
    base = 1.0 + site_index + 0.1 * step
    return {
        "mean": base,
        "std": 0.5 * base,
        "min": base - 2.0,
        "max": base + 2.0,
        "median": base - 0.1,
        "q25": base - 0.6,
        "q75": base + 0.4,
        "iqr": 1.0,
    }[statistic]


def make_records() -> list[Record]:
    records: list[Record] = []
    for step in STEPS:
        epoch = step // 3
        records.append(Record(step, epoch, "loss", "", "loss", "last", 2.0 * 10.0 ** (-step)))
        for i, site in enumerate(SITES):
            for statistic in ("mean", "std", "min", "max", "median", "q25", "q75", "iqr"):
                value = activation_value(i, step, statistic)
                records.append(Record(step, epoch, "activations", site, "value", statistic, value))
            records.append(
                Record(step, epoch, "activations", site, "dead", "fraction", 0.1 * i + 0.01 * step)
            )
            histogram = HistogramValue(
                edges=(-1.0, 0.0, 1.0, 2.0), counts=(step, 10 - step, i + 1), underflow=0
            )
            records.append(
                Record(step, epoch, "activations", site, "value", "histogram", None, histogram)
            )
            grad_site = site.replace(":output", ":weight.grad")
            records.append(
                Record(step, epoch, "gradients", grad_site, "l2", "last", 10.0 ** (-step - i))
            )
    return records


@pytest.fixture
def records() -> list[Record]:
    return make_records()
