"""Finiteness gatherer: the NaN and ±Inf of outputs and gradients, on every step.

It counts them in each output, output gradient and parameter gradient whatever the other
lenses' schedules.

A NaN born on a step no other lens observes spreads through the weights at the update; by the
next observed step every site holds one, and its origin is lost. So this gatherer counts
non-finite elements on every step: one pass per tensor (on the CPU the engine's count of
elements whose exponent bits are all ones, read in place; on a device two torch ops whose 0-d
result stays there until the flush). It hands over a vector ``[nonfinite, size]`` at the site
``"<site>:finite"`` (``"fc1:output:finite"``), of kind ``"<kind>.finite"``: on the CPU only for
the sites that hold a non-finite value, so that a clean step costs the counts and nothing more;
on a device for every site.

The data is read once: a site another gatherer hands to the scope on the step is summarized
there, and its summary's non-finite count is the one the NaN search reads
(:func:`~layerscope.health.nonfinite.nonfinite_of`); this gatherer hooks and counts only the
sites no other lens observes on the step. Nor is an output read whose module cannot make a
NaN or Inf out of a clean input that was just counted (a ReLU after a convolution), nor a
gradient such a module's node handed back from a clean one, when nothing else added to it
(:mod:`~layerscope.gatherers.known_finite`).
"""

from __future__ import annotations

import math
from collections.abc import Container
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.dlpack import to_dlpack
from torch.utils.hooks import RemovableHandle

from layerscope import _core
from layerscope.gatherers.base import (
    GatherContext,
    Gatherer,
    OutputLeaves,
    contained,
    outside_compile,
)
from layerscope.gatherers.forward import RESULT_FIRST, Recomputations
from layerscope.gatherers.known_finite import (
    KnownFinite,
    keeps_finite,
    keeps_finite_backward,
)
from layerscope.gatherers.parameters import owned_parameters, parameter_kind
from layerscope.observation import readable_reason, site_name
from layerscope.stats.tensors import TEAM

#: The finiteness kinds, each ``"<observed kind>.finite"``.
FINITE_KINDS: tuple[str, ...] = (
    "output.finite",
    "output.grad.finite",
    "weight.grad.finite",
    "bias.grad.finite",
)
#: The suffix of a finiteness site: ``"fc1:output" + FINITE_SUFFIX``.
FINITE_SUFFIX = ":finite"


#: Elements from which, when torch's threads are not lent to the engine
#: (:mod:`layerscope.stats.threads`), a clean tensor is proven clean by a torch sum (a finite sum
#: has no NaN or Inf in it) before the engine counts: torch's threads, already running, split such
#: a read, where the engine would start threads of its own per call.
TORCH_SUM_FROM = 1 << 18
#: The dtypes the C++ kernel reads in place.
_KERNEL_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))


def _engine_reads(x: torch.Tensor) -> bool:
    """Whether :func:`nonfinite_count` reads `x` itself (not: a tensor no statistic reads)."""
    return x.dtype in _KERNEL_DTYPES and x.is_cpu and x.layout == torch.strided


def nonfinite_count(tensor: torch.Tensor) -> int | torch.Tensor:
    """The non-finite elements of `tensor`: an int for a CPU tensor, else a 0-d device tensor.

    On the CPU the C++ engine counts them in place by their exponent bits
    (:func:`layerscope._core.count_nonfinite`): one read, exact, with no torch dispatch and no
    false alarm from finite values whose sum overflows, on torch's threads past
    :data:`~layerscope.stats.threads.GRAIN` elements. Where those are not lent, a tensor of
    :data:`TORCH_SUM_FROM` elements or more is first summed by torch, over its threads: a finite
    sum proves it clean, and only a non-finite one is counted. On a device torch ops and no host
    sync. Tensors no statistic reads (integers cannot be non-finite) count 0.
    """
    x = tensor.detach()
    if _engine_reads(x):  # the usual case
        if TEAM is None and x.numel() >= TORCH_SUM_FROM:  # torch's threads read it faster
            wide = torch.float64 if x.dtype == torch.float64 else torch.float32
            if math.isfinite(x.sum(dtype=wide)):
                return 0
        try:
            return _core.count_nonfinite(to_dlpack(x), torch.get_num_threads(), TEAM)
        except (TypeError, RuntimeError, BufferError):
            pass  # a tensor DLPack cannot carry (a DTensor's local view): torch below
    if readable_reason(x) is not None:
        return 0
    return x.numel() - torch.isfinite(x).sum(dtype=torch.float64)


#: Elements from which a gradient proved clean through the next module's backward node is
#: worth that node's hook: below it, reading the gradient costs less than the hook's call.
FOLLOW_BACK_FROM = 1 << 14


def _worth_following(args: Any) -> bool:  # noqa: ANN401
    """Whether the gradient reaching a module's input (``args[0]``) is worth proving clean."""
    source = args[0] if args else None
    return isinstance(source, torch.Tensor) and source.is_cpu and source.numel() >= FOLLOW_BACK_FROM


def _counted_clean(tensor: torch.Tensor, bad: int | torch.Tensor) -> bool:
    """Whether `bad`, :func:`nonfinite_count` of `tensor`, says the engine read it clean.

    Not a count of 0 given for a tensor no statistic reads (sparse, integer, meta), nor one on a
    device.
    """
    return type(bad) is int and bad == 0 and type(tensor) is torch.Tensor and _engine_reads(tensor)


class FiniteGatherer(Gatherer):
    """Counts the non-finite elements of outputs, their gradients and parameter gradients.

    Sites are the observed site followed by ``":finite"``: ``"fc1:output:finite"``,
    ``"fc1:output.grad:finite"``, ``"fc1:weight.grad:finite"``. A parameter shared by several
    modules is counted once (:func:`~layerscope.gatherers.parameters.owned_parameters`). Sites
    the scope summarizes on the step (``context.summarized``) are left to their summaries.
    """

    kinds = FINITE_KINDS

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._closed = False
        self._handles: dict[str, RemovableHandle] = {}
        self._outputs = context.modules_wanting("output.finite", "output.grad.finite")
        #: (module, finiteness kind, the kind it counts, site, parameter)
        self._grads: list[tuple[str, str, str, str, nn.Parameter]] = []
        self._calls = Recomputations()
        self._leaf = OutputLeaves(self._grad_hook, FINITE_SUFFIX)
        # The outputs of the step counted or proved clean, and the modules (by name) whose
        # clean input proves their output clean, with whether they work in place.
        self._known = KnownFinite()
        self._keep_finite = {
            name: bool(getattr(module, "inplace", False))
            for name, module in self._outputs.items()
            if keeps_finite(module)
        }
        # The same for gradients: the gradients of the step counted or proved clean, and the
        # modules whose backward node keeps a clean gradient clean (by the node's name).
        self._known_grads = KnownFinite()
        self._back_finite = {
            name: nodes
            for name, module in self._outputs.items()
            if (nodes := keeps_finite_backward(module))
        }
        # The plan's decisions (see follow): module -> (count outputs, count their gradients)
        self._planned: dict[str, tuple[bool | None, bool | None]] = {}
        self._planned_grads: list[tuple[str, str, str, str, nn.Parameter, bool | None]] = []
        wanting = context.modules_wanting("weight.grad.finite", "bias.grad.finite")
        for name, params in owned_parameters(context.modules, wanting).items():
            for pname, param in params:
                counted = f"{parameter_kind(pname)}.grad"
                kind = counted + ".finite"
                if kind in context.wanted[name]:
                    site = site_name(name, "", f"{pname}.grad") + FINITE_SUFFIX
                    self._grads.append((name, kind, counted, site, param))

    def _plans(self, name: str, kind: str) -> bool | None:
        """Whether the plan counts `kind` (``"output"``...) of module `name` here; None: ask.

        Whether a site kind is enabled is fixed for the plan, and so is whether it is
        summarized, except that its producer may fail during the plan: a summarized site is
        asked again on each call.
        """
        context = self.context
        if not context.enabled(name, kind + ".finite"):
            return False
        return None if context.summarized(name, kind) else True

    def follow(self, plan: Container[tuple[str, str]]) -> None:
        """Hook the modules whose outputs or gradients the plan counts here, and only those.

        Parameter gradients need no hook: they are read at the step (:meth:`before_step`).
        What each hook counts is decided here, once for the plan's steps.
        """
        self._planned = {}
        for name, module in self._outputs.items():
            planned = self._plans(name, "output"), self._plans(name, "output.grad")
            wanted = True in planned  # a summarized site needs no hook of its own
            if wanted:
                self._planned[name] = planned
            handle = self._handles.get(name)
            if wanted and handle is None and not self._closed:
                hook = partial(self._forward_hook, name, isinstance(module, RESULT_FIRST))
                self._handles[name] = module.register_forward_hook(hook, prepend=True)
            elif not wanted and handle is not None:
                handle.remove()
                del self._handles[name]
        self._planned_grads = []
        for name, kind, counted, site, param in self._grads:
            planned = self._plans(name, counted)
            if planned is not False:
                self._planned_grads.append((name, kind, counted, site, param, planned))

    @contained
    def _observe_call(
        self, name: str, result_first: bool, module: nn.Module, args: Any, output: Any
    ) -> None:  # noqa: ANN401
        planned = self._planned.get(name)
        if planned is None:
            return
        want_output, want_grad = planned
        if want_output is None:
            want_output = not self.context.summarized(name, "output")
        if want_grad is None:
            want_grad = not self.context.summarized(name, "output.grad")
        if not (want_output or want_grad) or not torch.is_grad_enabled():
            return
        recomputed = want_output and self._calls.recomputed(name)  # activation checkpointing
        inplace = self._keep_finite.get(name)
        for tensor, site, grad_hook in self._leaf.of(name, output, result_first):
            if want_output and not recomputed:
                if (
                    inplace is not None
                    and tensor is output
                    and self._known.output_is_clean(args, tensor, inplace)
                ):
                    self._known.add(tensor)
                else:
                    bad = self._observe(name, "output.finite", site, tensor)
                    if self._keep_finite and _counted_clean(tensor, bad):  # (a model with
                        self._known.add(tensor)  # no such module keeps no record)
            if want_grad and tensor.requires_grad:
                tensor.register_hook(grad_hook)
                nodes = self._back_finite.get(name)
                if nodes is not None and tensor is output and _worth_following(args):
                    self._follow_back(tensor, nodes)

    _forward_hook = outside_compile(_observe_call)

    def _follow_back(self, output: torch.Tensor, nodes: frozenset[str]) -> None:
        """Watch `output`'s node hand a gradient back to its module's input (one edge)."""
        node = output.grad_fn
        if node is not None and type(node).__name__ in nodes and len(node.next_functions) == 1:
            node.register_hook(partial(self._passed_back, output.output_nr))

    @contained
    def _passed_back(self, nr: int, grad_inputs: Any, grad_outputs: Any) -> None:  # noqa: ANN401
        """A node of :meth:`_follow_back` ran: what it handed back is clean if what it got was."""
        received = grad_outputs[nr] if nr < len(grad_outputs) else None
        if received is not None and grad_inputs and grad_inputs[0] is not None:
            if self._known_grads.holds(received):
                self._known_grads.add(grad_inputs[0])

    @contained
    def _grad_hook(self, name: str, site: str, grad: torch.Tensor) -> None:
        if self._closed or self._known_grads.holds(grad):  # (proved clean by the next module)
            return
        bad = self._observe(name, "output.grad.finite", site, grad)
        if self._back_finite and _counted_clean(grad, bad):
            self._known_grads.add(grad)

    def _observe(self, name: str, kind: str, site: str, tensor: torch.Tensor) -> int | torch.Tensor:
        """Hand ``[nonfinite, size]`` of `tensor` to the scope (on the CPU only when nonzero).

        Returns the count (:func:`nonfinite_count`).
        """
        bad = nonfinite_count(tensor)
        if isinstance(bad, torch.Tensor):
            size = torch.full_like(bad, float(tensor.numel()))
            self.context.observe(name, kind, site, torch.stack([bad, size]))
        elif bad:
            counts = torch.tensor([float(bad), float(tensor.numel())], dtype=torch.float64)
            self.context.observe(name, kind, site, counts)
        return bad

    def before_step(self) -> None:
        """Count the parameter gradients the optimizer is about to apply.

        Read here, not from a hook per parameter as they accumulate: what the step applies,
        for no call per parameter and micro-batch.
        """
        self._calls.clear()
        self._known.clear()
        self._known_grads.clear()
        summarized = self.context.summarized
        for name, kind, counted, site, param, planned in self._planned_grads:
            grad = param.grad
            if grad is not None and (planned or not summarized(name, counted)):
                self._observe(name, kind, site, grad)

    def remove(self) -> None:
        """Remove every hook; tensor hooks pending on live graphs become no-ops."""
        self._closed = True
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        self._leaf.release()
