"""Finetuning NequIP-family models with optax + orbax (issue 6).

Public API: :func:`finetune` (config → finetuned phonjax model directory), :class:`FinetuneConfig`,
:func:`load_finetune_config`, :class:`FinetuneResult`, :func:`plot_learning_curve`.
"""
from phonjax.train.config import FinetuneConfig, load_finetune_config
from phonjax.train.checkpoint import CheckpointError
from phonjax.train.loop import FinetuneResult, TrainingDivergedError, finetune
from phonjax.plot import plot_learning_curve

__all__ = ["CheckpointError", "FinetuneConfig", "FinetuneResult", "TrainingDivergedError", "finetune",
           "load_finetune_config", "plot_learning_curve"]
