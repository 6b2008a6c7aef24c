"""The observation gate: what a gatherer's tensor adds to the step's windows, or why not.

A tensor is reduced at once into the :class:`~layerscope.reduce.windows.WindowBuilder` when
the current plan observes its site kind and a statistic can read it; an unreadable tensor
(integer, complex, sparse) is skipped with a note said once, an empty one silently, and a
site whose reduction raised is warned about once and observed no more. Under FSDP2 a rank
reduces its shard of a distributed tensor. This is the per-observation hot path: it reads
its own attributes only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerscope.distributed import local_part
from layerscope.lenses.builtin import RELU_LIKE
from layerscope.observation import is_distributed_tensor, readable_reason
from layerscope.reduce.contract import Needs
from layerscope.reduce.windows import WindowBuilder
from layerscope.run.guard import Guard
from layerscope.run.plan import StepPlan
from layerscope.stats.site_summary import SiteSummary
from layerscope.stats.vectors import VectorRows
from layerscope.units import unit_axes, unit_axis

log = logging.getLogger("layerscope")

LOSS = ("", "loss")


class Gate:
    """Lets the observations of the current plan into the step's windows.

    Args:
        modules: every module of the model by qualified name.
        windows: where the step's observations are reduced.
        guard: the run's containment (its notes, the warning for a failed site).
        site_failed: ``site_failed(module, kind)`` takes a site kind out of every plan.
        failed: the site kinds taken out so far.

    Attributes:
        sharded: sites of distributed tensors (FSDP2): their shards are merged across ranks.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        windows: WindowBuilder,
        guard: Guard,
        site_failed: Callable[[str, str], None],
        failed: set[tuple[str, str]],
    ) -> None:
        self._axes = unit_axes(modules)
        self._relu_like = {name for name, m in modules.items() if isinstance(m, RELU_LIKE)}
        self._windows = windows
        self._notes = guard.notes
        self._warn_site = guard.site_failed
        self._take_out = site_failed
        self._failed = failed
        self._active: StepPlan = {}
        self._closed = False
        self.sharded: set[str] = set()

    def follow(self, plan: StepPlan) -> None:
        """Observe what `plan` observes from now on (nothing once closed)."""
        if not self._closed:
            self._active = plan

    def close(self) -> None:
        """Let nothing in from now on."""
        self._closed = True
        self._active = {}

    def enabled(self, module: str, kind: str) -> bool:
        """Whether the current plan observes `kind` at `module`."""
        return (module, kind) in self._active

    def observe(
        self,
        module: str,
        kind: str,
        site: str,
        tensor: torch.Tensor,
        count: Any = None,  # noqa: ANN401 - a number, or a host array broadcastable to `tensor`
        rows: VectorRows | None = None,
    ) -> None:
        """Reduce `tensor` into the step's window of `site`, if the plan observes it.

        `count` is the number of items a kept vector summarizes (attention rows, timesteps) and
        `rows` how its rows merge.
        """
        needs = self._active.get((module, kind))
        if needs is None:
            return
        readable = self._readable(module, site, tensor, needs.activity)
        if readable is None:
            return
        tensor, axis = readable
        threshold = 0.0 if kind == "output" and module in self._relu_like else None
        try:
            self._windows.add(module, kind, site, tensor, needs, axis, threshold, count, rows)
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            self._site_failed(module, kind, site, error)

    def _readable(
        self, module: str, site: str, tensor: torch.Tensor, activity: bool
    ) -> tuple[torch.Tensor, int | None] | None:
        """The part of `tensor` this rank reduces and its unit axis; None to skip it (noted)."""
        reason = readable_reason(tensor)
        if reason is not None:
            if site not in self._notes:
                self._notes.add(site)
                log.info("layerscope: skipping site %s: a statistic cannot read %s", site, reason)
            return None
        if tensor.numel() == 0:
            return None
        axis = unit_axis(self._axes.get(module), tensor) if activity else None
        if type(tensor) is not torch.Tensor and is_distributed_tensor(tensor):  # FSDP2's shard
            self.sharded.add(site)
            tensor, axis = local_part(tensor, axis)
            if tensor is None or tensor.numel() == 0:
                return None
        return tensor, axis

    def _site_failed(self, module: str, kind: str, site: str, error: Exception) -> None:
        """A site could not be reduced: warn once and observe it no more."""
        self._warn_site(site, error)
        self._take_out(module, kind)

    def summary_suffices(self, module: str, kind: str) -> bool:
        """Whether a :class:`SiteSummary` is all the plan needs of this site kind now."""
        needs = self._active.get((module, kind))
        # A host summary holds the moments whether or not they are needed.
        full = needs is not None and dataclasses.replace(needs, moments=True) == Needs()
        return full and not self._windows.force_torch

    def observe_summary(self, module: str, kind: str, site: str, summary: SiteSummary) -> None:
        """Take a summary a gatherer reduced on the host (after :meth:`summary_suffices`)."""
        if (module, kind) in self._active and summary.size:
            self._windows.add_summary(module, kind, site, summary)

    def observe_loss(self, loss: torch.Tensor | float) -> None:
        """Observe a loss for the step in progress."""
        if LOSS not in self._active:
            return
        try:
            tensor = _loss_tensor(loss)
        except Exception as error:  # noqa: BLE001 - a loss layerscope cannot read is skipped
            self._site_failed("", "loss", "loss", error)
            return
        self.observe("", "loss", "loss", tensor)

    def late_loss(self, loss: torch.Tensor | float, step: int, epoch: int) -> None:
        """Observe a loss for `step`, which the optimizer already closed."""
        if LOSS in self._failed:
            return
        try:
            readable = self._readable("", "loss", _loss_tensor(loss), False)
            if readable is not None:
                self._windows.add_to_closed(step, epoch, "", "loss", "loss", readable[0], Needs())
        except Exception as error:  # noqa: BLE001 - a statistic must never kill training
            self._site_failed("", "loss", "loss", error)


def _loss_tensor(loss: torch.Tensor | float) -> torch.Tensor:
    """The loss as a detached float tensor (a Python number becomes a 0-d CPU tensor)."""
    if isinstance(loss, torch.Tensor):
        return loss.detach().float()
    return torch.tensor(float(loss))
