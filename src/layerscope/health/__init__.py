"""Health checks: findings about a training run (what is wrong, where, since when).

The :class:`Health` lens runs the checks of :data:`CHECKS` on every step it
observes; each check is a small :class:`Check` subclass reading the step's windows and records.
"""

from layerscope.health.activity import DeadUnitsCheck, GradientDeathCheck
from layerscope.health.attention import AttentionCheck
from layerscope.health.base import Check, Series, SortedWindow, StepView
from layerscope.health.catalog import CHECKS
from layerscope.health.findings import SEVERITY_LEVELS, Finding, FindingLog
from layerscope.health.gradients import DepthGradientsCheck, GradientSpikeCheck
from layerscope.health.lenses import Health, NonFinite
from layerscope.health.loss import LossCheck
from layerscope.health.nonfinite import NanOriginCheck
from layerscope.health.optimizer import EpsDominanceCheck, UpdateRatioCheck
from layerscope.health.saturation import SaturationCheck

__all__ = [
    "CHECKS",
    "SEVERITY_LEVELS",
    "AttentionCheck",
    "Check",
    "DeadUnitsCheck",
    "DepthGradientsCheck",
    "EpsDominanceCheck",
    "Finding",
    "FindingLog",
    "GradientDeathCheck",
    "GradientSpikeCheck",
    "Health",
    "LossCheck",
    "NanOriginCheck",
    "NonFinite",
    "SaturationCheck",
    "Series",
    "SortedWindow",
    "StepView",
    "UpdateRatioCheck",
]
