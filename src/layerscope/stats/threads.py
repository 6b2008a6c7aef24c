"""The threads the engine's kernels read a large tensor with: torch's own.

Torch's CPU kernels run on the threads of an OpenMP runtime, which each write a contiguous share
of a tensor, at least :data:`GRAIN` elements each. Lent that team
(:class:`layerscope._core.ThreadTeam`), the engine splits a tensor of more than :data:`GRAIN`
elements over the same threads in the same shares, so each core reads what it has just written,
from its own cache, and no thread starts per call. Without the team
(torch built without OpenMP, Windows, a process with several OpenMP runtimes of which none is
torch's own, or ``LAYERSCOPE_TORCH_THREADS=0`` in the environment), the engine starts threads
of its own, which pays only from about a million elements on.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from layerscope import _core

#: The engine splits a tensor of more than this many elements over torch's team, one share per
#: started grain, as torch's own loops do (``kLentTeamGrain``, torch's ``GRAIN_SIZE``).
GRAIN = 1 << 15
#: The environment variable that, set to ``0``, keeps the engine off torch's threads.
OPT_OUT = "LAYERSCOPE_TORCH_THREADS"
#: Where Linux lists the files mapped into the process.
MAPS = Path("/proc/self/maps")
#: The file names of OpenMP runtimes: GCC's, Intel's, LLVM's (with a wheel's hash or not).
_RUNTIME = re.compile(r"/lib(?:gomp|iomp5|omp)(?:-[0-9a-f]+)?\.(?:so|dylib)[.0-9]*$")

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
    team = None
    if os.environ.get(OPT_OUT, "1") != "0" and torch.backends.openmp.is_available():
        library = torch_runtime(Path(torch.__file__).parent)
        if library is not None:
            team = _core.ThreadTeam.openmp(library or None)
    _borrowed.append(team)
    return team


def torch_runtime(torch_folder: Path) -> str | None:
    """The file of the OpenMP runtime torch runs on, as the process has it mapped.

    The one runtime mapped; of several, the one inside `torch_folder` (a wheel's own), else
    None: lending another than torch's would start a second team beside it. ``""`` where the
    process's mappings cannot be read (no ``/proc``): the engine then looks by the usual names.
    """
    try:
        lines = MAPS.read_text().splitlines()
    except OSError:
        return ""
    loaded = {line.split(maxsplit=5)[-1] for line in lines if _RUNTIME.search(line)}
    if len(loaded) == 1:
        return loaded.pop()
    own = [path for path in loaded if Path(path).is_relative_to(torch_folder)]
    return own[0] if len(own) == 1 else None
