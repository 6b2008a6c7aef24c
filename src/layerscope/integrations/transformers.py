"""Hugging Face Trainer callback: a Scope on the model and optimizer the Trainer built.

The Scope counts optimizer steps, as ``state.global_step`` does, so the records of a step carry
the global step at which its batches were processed. The loss is read from the model's output
(``outputs["loss"]`` or ``outputs.loss``) on every training forward pass and combined over a
step's micro-batches as the Trainer combines it for its own ``loss`` log.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import torch
from torch import nn

from layerscope.docs import error_message

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        error_message(
            "layerscope.integrations.transformers needs the 'transformers' and 'accelerate' "
            "packages: pip install 'layerscope[integrations]'",
            "missing-extra",
        )
    ) from error

from layerscope.integrations._attached import AttachedScope
from layerscope.lenses import Lens
from layerscope.sinks.base import Sink

log = logging.getLogger("layerscope")


def reports_to_tensorboard(args: TrainingArguments) -> bool:
    """Whether the Trainer writes a TensorBoard run: ``"tensorboard"`` or ``"all"`` in report_to."""
    report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
    return "tensorboard" in report_to or "all" in report_to


def tensorboard_dir(args: TrainingArguments) -> str | None:
    """A folder of this run's own next to the Trainer's TensorBoard run; None without one.

    The Trainer (transformers 5) writes its run to ``<output_dir>/runs/<date>_<host>``, or to
    ``$TENSORBOARD_LOGGING_DIR``; transformers 4 to ``args.logging_dir``. layerscope writes to
    ``<that>_layerscope`` (``<output_dir>/runs/<date>_<host>_layerscope``), a new folder per run
    (``_2``, ``_3``, ... when one of that name exists), so that two runs never mix their steps
    and one TensorBoard on the parent folder shows both.
    """
    if not reports_to_tensorboard(args):
        return None
    trainers = getattr(args, "logging_dir", None) or os.getenv("TENSORBOARD_LOGGING_DIR")
    if not trainers:  # transformers' own default_logdir(): the date of the run and the host
        dated = datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname()
        trainers = os.path.join(args.output_dir, "runs", dated)
    mine = base = os.path.expanduser(trainers).rstrip(os.sep) + "_layerscope"
    count = 1
    while os.path.exists(mine):
        count += 1
        mine = f"{base}_{count}"
    return mine


class LayerscopeCallback(AttachedScope, TrainerCallback):
    """Observes the model while ``Trainer.train`` runs.

    ``on_train_begin`` calls :func:`layerscope.watch` with the model and the Trainer's optimizer
    (unwrapped from accelerate's ``AcceleratedOptimizer``); ``on_train_end`` closes it. When
    ``"tensorboard"`` is in ``args.report_to`` records are written to a folder of their own next
    to the Trainer's TensorBoard run (see :func:`tensorboard_dir`); otherwise, without `logdir`
    or `sinks`, they stay in memory (:meth:`records`, :meth:`findings`) and a log message says
    so. The Trainer has no exception event: if ``train()`` raises, call ``close(failed=True)``
    (the Scope also closes at interpreter exit).

    Under torch.distributed (``torchrun``) every rank attaches a Scope: each rank's data is part
    of the statistics; rank 0 writes them and holds the records.

    The recorded loss of a step is the Trainer's: with ``gradient_accumulation_steps`` the
    micro-batches' losses are summed where the model normalised them by the step's item count
    (``num_items_in_batch``, GPT-2, BERT), averaged otherwise, as ``Trainer.training_step`` does.

    Args:
        lenses: what to observe; ``None`` means :func:`layerscope.default_lenses`.
        every: observe every N-th step.
        sinks: further sinks.
        flush_every: hand records to the sinks every N steps.
        logdir: a TensorBoard folder of your own, overriding the Trainer's.

    Example:
        >>> callback = LayerscopeCallback(every=10)
        >>> callback.scope is None  # attached when training begins
        True

    """

    def __init__(
        self,
        lenses: Sequence[Lens] | None = None,
        every: int = 1,
        sinks: Sequence[Sink] = (),
        flush_every: int = 10,
        logdir: str | None = None,
    ) -> None:
        super().__init__(lenses, every, sinks, flush_every)
        self.logdir = logdir
        self._loss_hook: Any = None
        self._losses: list[torch.Tensor] = []  # this step's micro-batches', as the Trainer adds
        self._loss_scale = 1  # accelerate's processes, when the Trainer averages items over them
        self._summed = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        optimizer: Any = None,  # noqa: ANN401
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Attach the Scope to the model and optimizer."""
        if model is None:
            raise ValueError(
                error_message(
                    "LayerscopeCallback.on_train_begin: the Trainer passed no model", "integrations"
                )
            )
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        logdir = self.logdir or tensorboard_dir(args)
        if logdir is None and not self.sinks and state.is_world_process_zero:
            log.warning(
                "layerscope: the Trainer reports to no TensorBoard (report_to=%r), so the "
                "records are written nowhere; read them with callback.records() and "
                "callback.findings(), or add 'tensorboard' to report_to, or pass "
                "LayerscopeCallback(logdir=...)",
                args.report_to,
            )
        self.attach(model, optimizer, logdir, (), state.global_step)
        # Trainer.compute_loss multiplies an item-normalised loss by the number of processes
        # when items are counted over all of them (average_tokens_across_devices).
        averaged = getattr(args, "average_tokens_across_devices", False)
        self._loss_scale = args.world_size if averaged else 1
        self._losses, self._summed = [], False
        self._loss_hook = model.register_forward_hook(self._read_loss, with_kwargs=True)

    def _read_loss(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:  # noqa: ANN401
        if self.scope is None or not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        # With num_items_in_batch the model divided its micro-batch's loss sum by the items of
        # the whole step: the Trainer's step loss is the sum of these, else their mean.
        self._summed = kwargs.get("num_items_in_batch") is not None
        scale = self._loss_scale if self._summed else 1
        self._losses.append(loss.detach().float().reshape(()) * scale)

    def on_pre_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Record the step's loss, combined over its micro-batches, before the step closes."""
        losses, self._losses = self._losses, []
        if self.scope is None or not losses:
            return
        total = torch.stack(losses).sum()
        self.scope.observe_loss(total if self._summed else total / len(losses))

    def on_step_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Follow the global step should the two ever part."""
        if self.scope is not None:
            self.scope.align_step(state.global_step)

    def on_epoch_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Records from now on carry the Trainer's epoch."""
        if self.scope is not None:
            self.scope.align_epoch(int(state.epoch or 0))

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Close the Scope: flush records, remove every hook."""
        self.close()

    def close(self, failed: bool = False) -> None:
        """Close the Scope and remove the loss hook. Safe to call twice.

        Args:
            failed: ``train()`` raised on this rank: close without waiting for the other ranks.
        """
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._losses = []
        super().close(failed)
