"""The threads the engine's kernels read a large tensor with: torch's own.

Torch's CPU kernels run on the threads of an OpenMP runtime, which each write a contiguous share
of a tensor. Lent that team (:class:`layerscope._core.ThreadTeam`), the engine splits a tensor of
:data:`SPLIT_FROM` elements or more over the same threads in the same shares, so each core reads
what it has just written, from its own cache, and no thread starts per call. Without the team
(torch built without OpenMP, Windows, or ``LAYERSCOPE_TORCH_THREADS=0`` in the environment), the
engine starts threads of its own, which pays only from about a million elements on.
"""

from __future__ import annotations

import os
import sys

from layerscope import _core

#: The fewest elements the engine splits over torch's team (``kLentTeamParallelMin``).
SPLIT_FROM = 1 << 16
#: The environment variable that, set to ``0``, keeps the engine off torch's threads.
OPT_OUT = "LAYERSCOPE_TORCH_THREADS"

_borrowed: list[_core.ThreadTeam | None] = []


def torch_team() -> _core.ThreadTeam | None:
    """The OpenMP team torch's CPU kernels run on, lent to the engine; None without one.

    None also while torch is not imported (its runtime is not loaded yet; nothing is loaded
    here), and when :data:`OPT_OUT` is ``0``.
    """
    if _borrowed:
        return _borrowed[0]
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    wanted = os.environ.get(OPT_OUT, "1") != "0" and torch.backends.openmp.is_available()
    _borrowed.append(_core.ThreadTeam.openmp() if wanted else None)
    return _borrowed[0]
