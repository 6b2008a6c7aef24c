"""Every built-in health check by name, in the order they run."""

from __future__ import annotations

from layerscope.health.activity import DeadUnitsCheck, GradientDeathCheck
from layerscope.health.attention import AttentionCheck
from layerscope.health.base import Check
from layerscope.health.gradients import DepthGradientsCheck, GradientSpikeCheck
from layerscope.health.loss import LossCheck
from layerscope.health.nonfinite import NanOriginCheck
from layerscope.health.optimizer import EpsDominanceCheck, UpdateRatioCheck
from layerscope.health.saturation import SaturationCheck

#: Every built-in check by name, in the order they run.
CHECKS: dict[str, type[Check]] = {
    c.name: c
    for c in (
        NanOriginCheck,
        DeadUnitsCheck,
        GradientDeathCheck,
        SaturationCheck,
        DepthGradientsCheck,
        GradientSpikeCheck,
        UpdateRatioCheck,
        EpsDominanceCheck,
        LossCheck,
        AttentionCheck,
    )
}
