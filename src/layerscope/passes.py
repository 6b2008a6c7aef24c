"""Passes: which forward and backward passes of a step really happened.

A forward pass that raised (caught by the training loop) or a step the optimizer skipped
(``GradScaler`` after an overflow, a loop that skips a bad batch) must not pool its
observations into the next real step. :class:`PassTracker` notices both with two hooks: a
forward hook on the root module (a pass that raised never reaches it) and a
post-accumulate-grad hook on one trainable parameter (a backward ran; if its gradient is gone
by the next forward pass while no step was taken, the gradients were thrown away unused).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from layerscope.reduce.windows import WindowBuilder


class PassTracker:
    """Keeps the observations of passes that did not count out of the step's windows.

    The scope calls :meth:`forward_begins` from its root forward pre-hook (training passes
    only), :meth:`step_begins` before reading a step and :meth:`step_closed` after, and
    :meth:`follow` with each new plan.

    Args:
        model: the observed model; its root gets a forward hook.
        windows: where the step's observations wait; the tracker drops from it.
    """

    def __init__(self, model: nn.Module, windows: WindowBuilder) -> None:
        self.windows = windows
        self.open = False  # a training forward pass began and has not returned
        self.backward_seen = False  # a backward reached the probe since the step began
        # Inside opt.step(closure) (LBFGS evaluates it several times, zeroing gradients first):
        # gradients cleared there are the step's own business, not a skipped step.
        self.stepping = False
        self._model = model
        self._probe = next((p for p in model.parameters() if p.requires_grad), None)
        self.handles: list[Any] = []

    def follow(self, observing: bool) -> None:
        """Hook the model while the step observes something; an idle step has nothing to lose.

        A step the optimizer skips, or a pass that raises, leaves the step where it was:
        the hooks stay for the passes that replace it.
        """
        if observing and not self.handles:
            self.handles.append(self._model.register_forward_hook(self._forward_done))
            if self._probe is not None and self._probe.requires_grad:
                hook = self._probe.register_post_accumulate_grad_hook(self._backward)
                self.handles.append(hook)
        elif not observing and self.handles:
            self.remove()
            self.open = self.backward_seen = False

    def forward_begins(self) -> tuple[str, list[str]] | None:
        """A training forward pass begins; what was dropped, and why, if anything was."""
        lost = None
        if not self.handles:
            return None
        if self.open:
            lost = ("a forward pass raised", self.windows.abort_forward())
        elif (
            self.backward_seen
            and not self.stepping
            and self._probe is not None
            and self._probe.grad is None
        ):
            # Gradients cleared (zero_grad) after a backward, with no step in between.
            lost = ("the optimizer step was skipped", self.windows.discard_step())
            self.backward_seen = False
        self.open = True
        self.windows.begin_forward()
        return lost

    def step_begins(self) -> tuple[str, list[str]] | None:
        """The step is read: a forward pass still open raised; its observations go."""
        self.stepping = True
        if not self.open:
            return None
        self.open = False
        return ("a forward pass raised", self.windows.abort_forward())

    def step_closed(self) -> None:
        """The step was closed: its passes counted."""
        self.backward_seen = self.stepping = False

    def _forward_done(self, module: nn.Module, args: Any, output: Any) -> None:  # noqa: ANN401
        if self.open:
            self.open = False
            try:
                self.windows.end_forward()
            except Exception as error:  # noqa: BLE001 - runs inside the user's forward()
                self.windows.abort_forward()
                warnings.warn(
                    f"layerscope: WindowBuilder.end_forward failed ({error!r}); that forward "
                    "pass is not observed and training goes on",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _backward(self, param: torch.Tensor) -> None:
        self.backward_seen = True

    def remove(self) -> None:
        """Remove both hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
