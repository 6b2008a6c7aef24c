"""The parts a :class:`~layerscope.scope.Scope` is composed of, one job each.

:mod:`~layerscope.run.guard` contains failures, :mod:`~layerscope.run.plan` says what is
observed on a step, :mod:`~layerscope.run.crew` keeps the installed gatherers,
:mod:`~layerscope.run.gate` decides what an observation adds to the step's windows,
:mod:`~layerscope.run.clock` counts steps and epochs, :mod:`~layerscope.run.output` turns
closed steps into records and hands them out, and :mod:`~layerscope.run.state` carries them
across a checkpoint.
"""
