"""Child process of tests/test_train_faults.py: a tiny finetune (tests/train_helpers.PairModel) that
resumes from whatever checkpoints ``OUT`` holds, then writes its final training state to ``OUT/final.npz``.

Usage: python train_fault_child.py DATA.extxyz OUT MAX_EPOCHS. Every log line is printed (flushed) so the
parent can time its kills against training progress.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel  # noqa: E402

from phonjax.train.config import DataConfig, FinetuneConfig, OptimConfig, TrainingConfig  # noqa: E402
from phonjax.train.loop import finetune  # noqa: E402


def config(data: str, out: str, max_epochs: int) -> FinetuneConfig:
    return FinetuneConfig(model="toy", out_dir=out, data=DataConfig(train=data, batch_size=2),
                          optim=OptimConfig(learning_rate=0.02, warmup_steps=2, ema_decay=0.9),
                          training=TrainingConfig(max_epochs=max_epochs, progress=False, checkpoint_every=1,
                                                  keep_checkpoints=2, patience=None,
                                                  energy_reference="isolated_atoms"))


def main(data: str, out: str, max_epochs: int) -> None:
    res = finetune(config(data, out, max_epochs), model=PairModel(seed=0), resume=True,
                   log=lambda m: print(m, flush=True))
    leaves = jax.tree_util.tree_leaves(res.last_state)
    np.savez(Path(out) / "final.npz", *[np.asarray(x) for x in leaves])
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
