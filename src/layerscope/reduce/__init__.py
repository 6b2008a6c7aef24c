"""The reduce stage: each observed tensor to a small summary, and a step's summaries to windows.

:class:`Needs` (what a lens asks of a site) and :class:`SiteWindow` (what it gets) are the
contract with the lenses above; :class:`WindowBuilder` does the work.
"""

from layerscope.reduce.contract import NOTHING, Needs, SiteWindow
from layerscope.reduce.windows import StepWindows, WindowBuilder

__all__ = ["NOTHING", "Needs", "SiteWindow", "StepWindows", "WindowBuilder"]
