"""Hugging Face Trainer callback: a Scope on the model and optimizer the Trainer built.

The Scope counts optimizer steps, as ``state.global_step`` does, so the records of a step carry
the global step at which its batches were processed. The loss is read from the model's output
(``outputs["loss"]`` or ``outputs.loss``) on every training forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def tensorboard_dir(args: TrainingArguments) -> str | None:
    """Where the Trainer's TensorBoard run goes, or None when it reports to no TensorBoard.

    ``args.logging_dir`` where the Trainer has one (transformers 4), else
    ``$TENSORBOARD_LOGGING_DIR``, else ``<output_dir>/runs/layerscope`` (transformers 5 writes
    its own run to a dated folder beside it, so one TensorBoard on ``runs/`` shows both).
    """
    report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
    if "tensorboard" not in report_to and "all" not in report_to:
        return None
    logging_dir = getattr(args, "logging_dir", None) or os.getenv("TENSORBOARD_LOGGING_DIR")
    return logging_dir or os.path.join(args.output_dir, "runs", "layerscope")


class LayerscopeCallback(AttachedScope, TrainerCallback):
    """Observes the model while ``Trainer.train`` runs.

    ``on_train_begin`` calls :func:`layerscope.watch` with the model and the Trainer's optimizer
    (unwrapped from accelerate's ``AcceleratedOptimizer``); ``on_train_end`` closes it. When
    ``"tensorboard"`` is in ``args.report_to`` records are written into the Trainer's
    TensorBoard folder (see :func:`tensorboard_dir`). The Trainer has no exception event: if
    ``train()`` raises, call :meth:`close` (the Scope also closes at interpreter exit).

    Args:
        lenses: what to observe; ``None`` means :func:`layerscope.lenses.default`.
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
        if not state.is_world_process_zero:
            return
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        logdir = self.logdir or tensorboard_dir(args)
        self.attach(model, optimizer, logdir, (), state.global_step)
        self._loss_hook = model.register_forward_hook(self._read_loss)

    def _read_loss(self, module: nn.Module, args: Any, output: Any) -> None:  # noqa: ANN401
        if self.scope is None or not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self.scope.observe_loss(loss.detach())

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
            self.scope.epoch_count = int(state.epoch or 0)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Close the Scope: flush records, remove every hook."""
        self.close()

    def close(self) -> None:
        """Close the Scope and remove the loss hook. Safe to call twice."""
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        super().close()
