"""One finetuning stage's fixed parts: its data splits, padded shapes, schedule, compiled steps, validation.

:class:`Stage` loads and checks the stage's data at construction (all bad input fails before any
training), builds the optimiser and the jitted steps in :meth:`Stage.build`, and evaluates a
parameter set on the validation split (padded batches of the stage's capacities) in :meth:`Stage.evaluate`.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.train.config import FinetuneConfig, FreezeConfig, StageConfig
from phonjax.train.data import Frame, compute_capacities, epoch_order, load_splits
from phonjax.train.fc_loss import FcReference
from phonjax.train.loss import finalize_errors
from phonjax.train.model_api import TrainableModel, make_batch
from phonjax.train.optim import make_optimizer, make_schedule, trainable_mask
from phonjax.train.parallel import DataParallel
from phonjax.train.steps import FcTerm, build_fc_eval, build_steps, init_state


class Stage:
    """Everything of one stage that stays fixed while it trains (data, shapes, compiled steps)."""

    def __init__(self, model: TrainableModel, cfg: FinetuneConfig, stage: StageConfig, index: int,
                 fc_ref: FcReference | None, log: Callable, dp: DataParallel, short_range=None):
        self.model, self.cfg, self.stage, self.index, self.log, self.dp = model, cfg, stage, index, log, dp
        d = cfg.data
        self.train, self.valid = load_splits(
            stage.train, stage.valid, valid_fraction=d.valid_fraction, seed=d.split_seed,
            use_stress=d.use_stress, max_structures=d.max_structures,
            isolated_atom_energies=d.isolated_atom_energies, type_names=model.type_names)
        if short_range is not None:  # labels minus the harmonic dipole–dipole part (phonjax.train.short_range)
            from phonjax.train.short_range import apply_to_splits
            sr = apply_to_splits(short_range, {"train": self.train, "valid": self.valid}, log,
                                 stress=d.use_stress and cfg.loss.stress_weight > 0)
            self.train, self.valid = sr["train"], sr["valid"]
        sizes = [model.frame_sizes(f) for f in self.train.frames + self.valid.frames]
        self.caps = compute_capacities(sizes, dp.per_device(d.batch_size))  # one device's share of a batch
        self.use_stress = d.use_stress and cfg.loss.stress_weight > 0 and any(
            f.stress is not None for f in self.train.frames)
        self.max_epochs = stage.max_epochs or cfg.training.max_epochs
        self.n_batches = math.ceil(len(self.train) / d.batch_size)
        self.total_steps = self.max_epochs * self.n_batches
        self.schedule = make_schedule(cfg.optim, self.total_steps, stage.learning_rate)
        self.freeze: FreezeConfig = stage.freeze or cfg.freeze
        self.valid_batches = [self.batch([self.valid.frames[i] for i in b])
                              for b in epoch_order(len(self.valid), d.batch_size, 0, 0, 0, shuffle=False)]
        self.fc_batch = None
        if fc_ref is not None and cfg.loss.fc.weight > 0:
            fr = Frame(np.asarray(fc_ref.numbers), fc_ref.positions, fc_ref.cell, 0.0,
                       np.zeros_like(fc_ref.positions), None, fc_ref.source)
            caps = compute_capacities([model.frame_sizes(fr)], 1)
            self.fc_batch = make_batch(model, [fr], caps, False)
            self.fc_rows = jnp.asarray(fc_ref.rows)
            self.fc = jnp.asarray(fc_ref.fc)
            self.fc_n = len(fc_ref.numbers)
        log(f"stage {stage.name}: {len(self.train)} train / {len(self.valid)} valid structures, "
            f"{self.n_batches} batches/epoch, capacities {self.caps}"
            + (f" per device, {dp.n_devices} devices" if dp.n_devices > 1 else ""))

    def batch(self, frames: list[Frame]):
        """The global padded batch of ``frames``, split over the stage's devices."""
        return self.dp.batch(self.model, frames, self.caps, self.use_stress)

    def build(self, tparams):
        self.mask = trainable_mask(tparams, self.freeze, never=tuple(getattr(self.model, "never_train", ())))
        self.optimizer = make_optimizer(self.cfg.optim, self.schedule, self.mask)
        fc = None
        if self.fc_batch is not None:
            fc = FcTerm(self.fc_batch, self.fc_rows, self.fc, self.fc_n, self.cfg.loss.fc.weight,
                        self.cfg.loss.fc.n_vectors)
        self.train_step, self.eval_step = build_steps(self.model, self.cfg.loss, self.optimizer,
                                                      self.cfg.optim.ema_decay, self.use_stress, fc, self.dp)
        self.fc_eval = None if fc is None else (build_fc_eval(self.model, fc), fc.weight)

    def init_state(self, tparams, seed: int):
        """Fresh training state, replicated on the stage's devices."""
        return self.dp.replicate(init_state(self.optimizer, tparams, seed + 1000 * self.index))

    def evaluate(self, tparams) -> dict:
        sums, loss, n = None, 0.0, 0.0
        for b in self.valid_batches:
            terms, s = self.eval_step(tparams, b)
            ng = float(jnp.sum(b.labels.graph_mask))
            loss += float(terms["total"]) * ng
            n += ng
            sums = s if sums is None else jax.tree_util.tree_map(jnp.add, sums, s)
        out = finalize_errors(sums)
        out["loss"] = loss / max(n, 1.0)
        if self.fc_eval is not None:  # validation loss includes the FC term (all home-cell directions)
            fn, w = self.fc_eval
            out["fc"] = float(fn(tparams))
            out["loss"] += w * out["fc"]
        return out
