"""PyTorch Lightning callback: a Scope that follows the trainer's global step and logger.

The Scope counts optimizer steps, as ``trainer.global_step`` does, so the records of a step carry
the global step at which its batches were processed, with or without ``accumulate_grad_batches``.
Lightning runs the forward and backward pass inside ``optimizer.step(closure)``; the Scope reads
gradients after that closure has run, so they belong to the step that computed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from layerscope.docs import error_message

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        error_message(
            "layerscope.integrations.lightning needs the 'lightning' package: "
            "pip install 'layerscope[integrations]'",
            "missing-extra",
        )
    ) from error

from layerscope.integrations._attached import AttachedScope
from layerscope.lenses import Lens
from layerscope.records import Record
from layerscope.sinks.base import Sink
from layerscope.sinks.tensorboard import ScalarNames


class LoggerSink:
    """Hands scalar records to a Lightning logger (W&B, CSV, MLflow, ...) via ``log_metrics``.

    Metrics are named as the TensorBoard sink names them (:func:`~layerscope.sinks.tensorboard.
    scalar_name`: ``loss``, ``model.fc2/weight.grad.l2``) and logged at the record's step;
    histograms are left to the TensorBoard sink.

    Example:
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> import tempfile
        >>> sink = LoggerSink(CSVLogger(tempfile.mkdtemp()))
        >>> sink.write([Record(0, 0, "loss", "loss", "value", "mean", 0.5)])
        >>> sink.close()

    """

    def __init__(self, logger: Any) -> None:  # noqa: ANN401 - any Lightning logger
        self.logger = logger
        self._names = ScalarNames()

    def write(self, records: Sequence[Record]) -> None:
        """Log the scalar records, one ``log_metrics`` call per step."""
        by_step: dict[int, dict[str, float]] = {}
        for r in records:
            if r.value is not None:
                by_step.setdefault(r.step, {})[self._names(*r[2:6])[0]] = float(r.value)
        for step in sorted(by_step):
            self.logger.log_metrics(by_step[step], step=step)

    def close(self) -> None:
        """Ask the logger to write what it holds."""
        self.logger.save()


class LayerscopeCallback(AttachedScope, Callback):
    """Observes a LightningModule while ``trainer.fit`` runs.

    On train start it calls :func:`layerscope.watch` with the module and the trainer's first
    optimizer; on train end, or when training raises, it closes the Scope (hooks removed, records
    flushed). Records go where the trainer already logs: into a ``TensorBoardLogger``'s
    ``log_dir``, or through any other logger's ``log_metrics`` (W&B, CSV, MLflow). The loss each
    ``training_step`` returns is recorded too, un-scaled by ``accumulate_grad_batches``.

    Under a distributed strategy (``strategy="ddp"``) every rank attaches a Scope: each rank's
    data is part of the statistics, and rank 0 writes them and holds :meth:`records` and
    :meth:`findings`. The Scope's state (step, lens states) is saved in the trainer's
    checkpoints (:meth:`state_dict`) and restored when ``fit`` resumes from one.

    Args:
        lenses: what to observe; ``None`` means :func:`layerscope.default_lenses`.
        every: observe every N-th step.
        sinks: further sinks.
        flush_every: hand records to the sinks every N steps.
        use_logger: write through the trainer's logger (default True).

    Example:
        >>> callback = LayerscopeCallback(every=10)
        >>> callback.scope is None  # attached when training starts
        True

    """

    def __init__(
        self,
        lenses: Sequence[Lens] | None = None,
        every: int = 1,
        sinks: Sequence[Sink] = (),
        flush_every: int = 10,
        use_logger: bool = True,
    ) -> None:
        super().__init__(lenses, every, sinks, flush_every)
        self.use_logger = use_logger

    def _logging(self, trainer: Trainer) -> tuple[str | None, list[Sink]]:
        logger = trainer.logger if self.use_logger else None
        if logger is None:
            return None, []
        from lightning.pytorch.loggers import TensorBoardLogger

        if isinstance(logger, TensorBoardLogger):
            return str(logger.log_dir), []
        return None, [LoggerSink(logger)]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Attach the Scope to the module and the trainer's first optimizer."""
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        logdir, sinks = self._logging(trainer)
        self.attach(pl_module, optimizer, logdir, sinks, trainer.global_step)
        self.scope.align_epoch(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Records from now on carry the trainer's epoch."""
        if self.scope is not None:
            self.scope.align_epoch(trainer.current_epoch)

    def on_train_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,  # noqa: ANN401
    ) -> None:
        """Follow the global step should the two ever part (a step skipped by a grad scaler)."""
        if self.scope is not None:
            self.scope.align_step(trainer.global_step)

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        """Record the loss of this micro-batch as ``training_step`` returned it."""
        if self.scope is not None and pl_module.automatic_optimization:
            self.scope.observe_loss(loss.detach() * trainer.accumulate_grad_batches)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the Scope: flush records, remove every hook."""
        self.close()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Close the Scope when training raises; the records so far are kept.

        Under torch.distributed the failing rank does not wait for the others at a last
        exchange (they may never come); its pending steps are dropped.
        """
        self.close(failed=True)

    def state_dict(self) -> dict[str, Any]:
        """The Scope's state for the trainer's checkpoint (local to this rank)."""
        return self.scope_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the Scope's state from a checkpoint (before or while training)."""
        self.resume_from(state_dict)
