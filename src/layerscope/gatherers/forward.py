"""Forward gatherer: module outputs, and (through tensor hooks on them) their gradients.

A forward hook that registers a tensor hook on each output leaf gets the gradient w.r.t. the
module's output for a few microseconds, where a full backward hook costs several times that and
fails after in-place operations (pytorch#61519). Hooks registered before an in-place op on the
same tensor still receive the gradient w.r.t. the value the module returned.

Under ``torch.compile`` (compiled before or after ``watch``) dynamo would trace the forward
hook and hand it symbolic tensors that no statistic can read. The hook is excluded from tracing
(``torch.compiler.disable``): each observed module's output leaves the compiled graph, is
reduced eagerly, and the graph resumes after it. Every statistic is kept on every step, at the
price of a graph break at each observed module on the steps that observe it (unobserved steps
run the model without these hooks). The finiteness gatherer's hooks, which the NaN search
keeps on every step, break the graph the same way on every step: leave the
:class:`~layerscope.health.NonFinite` lens out, or observe fewer modules (``names=``), where
that costs too much.
"""

from __future__ import annotations

from collections.abc import Container
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import (
    GatherContext,
    Gatherer,
    OutputLeaves,
    contained,
    outside_compile,
)

#: Modules that return ``(result, extras...)``: only the result is observed, at the sites
#: ``"<module>:output"`` and ``"<module>:output.grad"``. ``nn.MultiheadAttention`` returns
#: ``(attn_output, attn_weights)``; the weights (averaged over heads with ``need_weights=True``,
#: the default of a direct call) are the Attention lens's to read.
RESULT_FIRST: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)


def in_backward() -> bool:
    """Whether a backward pass is running (a forward call now is a checkpoint's recomputation)."""
    return torch._C._current_graph_task_id() != -1


class Recomputations:
    """Tells a recomputed forward call (activation checkpointing) from a new one, per module.

    Non-reentrant checkpointing runs a module's forward with gradients on, then again inside
    the backward pass to rebuild what it saved: the second call is no new observation.
    Reentrant checkpointing runs the first call without gradients (not observed, like any
    ``no_grad`` pass), so its call inside the backward pass is the one to observe. A module's
    calls in the backward pass are recomputations while they do not outnumber its observed
    calls since the last step.
    """

    def __init__(self) -> None:
        self._observed: dict[str, int] = {}

    def recomputed(self, name: str) -> bool:
        """Note a gradient-enabled call of module `name`; whether it recomputes an observed one."""
        if torch._C._current_graph_task_id() == -1:  # not in_backward(), without its call
            self._observed[name] = self._observed.get(name, 0) + 1
            return False
        left = self._observed.get(name, 0)
        if left:
            self._observed[name] = left - 1
        return left > 0

    def clear(self) -> None:
        """Forget the step's calls (at the step boundary)."""
        self._observed.clear()


class ForwardGatherer(Gatherer):
    """Observes module outputs (``"output"``) and their gradients (``"output.grad"``).

    Only the modules some lens reads them from, on the steps their schedules allow. An output
    that is a tuple, list, dict or dataclass gives a site per tensor leaf (``"lstm:output[0]"``),
    except at :data:`RESULT_FIRST` modules.

    Evaluation passes under ``torch.no_grad()`` / ``inference_mode`` are not observed: they are
    not part of training, and their activations would blur the training statistics. Nor are
    activation checkpointing's recomputations of a forward call already observed
    (:class:`Recomputations`): each call is one observation, with checkpointing or without.
    """

    kinds = ("output", "output.grad")

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._closed = False
        self._modules = context.modules_wanting(*self.kinds)
        self._handles: dict[str, RemovableHandle] = {}
        self._leaf = OutputLeaves(self._grad_hook)
        self._calls = Recomputations()

    def before_step(self) -> None:
        """A new step: no forward call of it has been observed yet."""
        self._calls.clear()

    def follow(self, plan: Container[tuple[str, str]]) -> None:
        """Hook the modules whose outputs or gradients the plan observes, and only those.

        A module with a forward hook takes torch's slow call path, a few microseconds a call,
        so the modules of steps that observe nothing are left unhooked. The hook goes first
        among the module's hooks: the site is what the module returned, whatever other hooks
        make of it, however often it is removed and put back.
        """
        for name, module in self._modules.items():
            wanted = (name, "output") in plan or (name, "output.grad") in plan
            handle = self._handles.get(name)
            if wanted and handle is None and not self._closed:
                wants = self.context.wanted[name]
                hook = partial(
                    self._forward_hook,
                    name,
                    "output" in wants,
                    "output.grad" in wants,
                    isinstance(module, RESULT_FIRST),
                )
                self._handles[name] = module.register_forward_hook(hook, prepend=True)
            elif not wanted and handle is not None:
                handle.remove()
                del self._handles[name]

    @contained
    def _observe_call(
        self,
        name: str,
        want_output: bool,
        want_grad: bool,
        result_first: bool,
        module: nn.Module,
        args: Any,
        output: Any,  # noqa: ANN401
    ) -> None:
        enabled = self.context.enabled
        want_output = want_output and enabled(name, "output")
        want_grad = want_grad and enabled(name, "output.grad")
        if not (want_output or want_grad) or not torch.is_grad_enabled():
            return
        if want_output and self._calls.recomputed(name):
            want_output = False  # its gradient hook still goes on: reentrant checkpointing's
            # recomputed outputs are the ones the backward pass reaches
        for tensor, output_site, grad_hook in self._leaf.of(name, output, result_first):
            if want_output:
                self.context.observe(name, "output", output_site, tensor)
            if want_grad and tensor.requires_grad:
                tensor.register_hook(grad_hook)

    _forward_hook = outside_compile(_observe_call)

    @contained
    def _grad_hook(self, name: str, site: str, grad: torch.Tensor) -> None:
        if not self._closed:
            self.context.observe(name, "output.grad", site, grad)

    def remove(self) -> None:
        """Remove every hook; tensor hooks still pending on live graphs become no-ops."""
        self._closed = True
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        self._leaf.release()
