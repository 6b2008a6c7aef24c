"""One rank of a Hugging Face Trainer run under ``torchrun --nproc_per_node=2`` (gloo, CPU).

    torchrun --standalone --nproc_per_node=2 tests/integrations/hf_ddp_worker.py OUT_DIR

GPT-2 built from a config trains with ``gradient_accumulation_steps=2``, observed by the
callback on every rank. Rank 0 pickles the callback's records and the Trainer's log history to
OUT_DIR/result.pkl.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import torch.distributed as dist
import transformers
from test_transformers_models import Tokens, gpt2

from layerscope.integrations.transformers import LayerscopeCallback

warnings.filterwarnings("ignore")


def main(out_dir: Path) -> None:
    callback = LayerscopeCallback(flush_every=2)
    args = transformers.TrainingArguments(
        output_dir=str(out_dir / "out"),
        per_device_train_batch_size=2,
        num_train_epochs=1,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=gpt2(), args=args, train_dataset=Tokens(n=32), callbacks=[callback]
    )
    trainer.train()
    if trainer.is_world_process_zero():
        result = (callback.records(), trainer.state.log_history, dist.get_world_size())
        (out_dir / "result.pkl").write_bytes(pickle.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
