"""Optimiser: AdamW + warm-up/cosine (or plateau) schedule + global-norm clipping + parameter masks + EMA.

The learning rate is ``schedule(step) × lr_scale``; ``lr_scale`` is a traced scalar passed to the train
step (reduced on validation plateaus on the host), so changing it never recompiles. Frozen parameters
(mask False) receive zero updates and no weight decay.
"""
from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from phonjax.train.config import FreezeConfig, OptimConfig


class FreezeError(ValueError):
    """A freezing option selects no parameter, or names layers the model does not have."""


def make_schedule(cfg: OptimConfig, total_steps: int, learning_rate: float | None = None) -> optax.Schedule:
    """Learning rate (before ``lr_scale``) as a function of the optimiser step count."""
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    warm = max(int(cfg.warmup_steps), 0)
    if cfg.schedule == "cosine":
        decay = max(total_steps, warm + 1)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warm else lr, peak_value=lr, warmup_steps=warm,
            decay_steps=decay, end_value=lr * cfg.min_lr_ratio)
    # constant and plateau: warm-up then constant (plateau scales via lr_scale)
    if warm == 0:
        return optax.constant_schedule(lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warm), optax.constant_schedule(lr)], [warm])


def _path_str(path) -> str:
    parts = []
    for k in path:
        if hasattr(k, "key"):
            parts.append(str(k.key))
        elif hasattr(k, "name"):
            parts.append(str(k.name))
        elif hasattr(k, "idx"):
            parts.append(str(k.idx))
        else:
            parts.append(str(k))
    return "/".join(parts)


def trainable_mask(params, cfg: FreezeConfig, n_layers: int | None = None, never: tuple[str, ...] = ()):
    """Boolean pytree (same structure as ``params``) of trainable leaves.

    ``params`` is the training tree ``{"model": model_params, "offsets": (n_types,)}``; model parameter
    paths are matched by module names as in torch nequip (``layer{i}_convnet``,
    ``per_atom_energy_readout``, ``per_type_energy_scale_shift``). ``never``: regexes of parameters the
    model keeps fixed (e.g. non-trainable shifts), excluded whatever ``cfg`` says.
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [_path_str(p) for p, _ in flat]
    if n_layers is None:
        layers = {int(m.group(1)) for p in paths for m in [re.search(r"layer(\d+)_convnet", p)] if m}
        n_layers = (max(layers) + 1) if layers else 0
    if cfg.train == "all":
        pats = [r".*"]
    elif cfg.train == "readout":
        pats = [r"per_atom_energy_readout"]
    elif cfg.train == "scale_shift":
        pats = [r"per_type_energy_scale_shift"]
    elif cfg.train == "last_layers":
        if cfg.last_k_layers > n_layers:
            raise FreezeError(f"freeze.last_k_layers={cfg.last_k_layers} but the model has {n_layers} layers")
        pats = [rf"layer{i}_convnet" for i in range(n_layers - cfg.last_k_layers, n_layers)]
        pats += [r"per_atom_energy_readout", r"per_type_energy_scale_shift"]
    else:
        pats = list(cfg.patterns)
    regs = [re.compile(p) for p in pats]
    fixed = [re.compile(p) for p in never]
    mask_leaves = []
    for p in paths:
        if p.startswith("offsets"):
            mask_leaves.append(bool(cfg.train_energy_offsets))
        else:
            mask_leaves.append(any(r.search(p) for r in regs) and not any(r.search(p) for r in fixed))
    if not any(m for m, p in zip(mask_leaves, paths) if not p.startswith("offsets")):
        raise FreezeError(f"freeze.train={cfg.train!r} selects no model parameter (patterns {pats})")
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, mask_leaves)


def make_optimizer(cfg: OptimConfig, schedule: optax.Schedule, mask) -> optax.GradientTransformation:
    """clip(global norm) → AdamW(schedule, weight decay) on trainable leaves; zero updates elsewhere."""
    parts = []
    if cfg.clip_norm is not None and cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    inner = optax.chain(*parts)
    labels = jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)


def ema_update(ema, params, decay: float, step) -> object:
    """EMA with nequip-style warm-up of the decay: d = min(decay, (1 + n)/(10 + n))."""
    n = jnp.asarray(step, jnp.float64)
    d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    # e + (1 − d)(p − e): a parameter that does not move (frozen) keeps its EMA bit-identical
    return jax.tree_util.tree_map(lambda e, p: (e + ((1.0 - d) * (p - e)).astype(p.dtype)).astype(p.dtype),
                                  ema, params)


class PlateauScheduler:
    """Host-side reduce-on-plateau: multiply ``scale`` by ``factor`` after ``patience`` evaluations
    without improvement of the monitored validation metric (never below ``min_scale``). Its state is
    a small dict stored in checkpoints."""

    def __init__(self, factor: float, patience: int, min_scale: float, state: dict | None = None):
        self.factor, self.patience, self.min_scale = factor, patience, min_scale
        self.state = dict(state) if state else {"scale": 1.0, "best": float("inf"), "bad": 0}

    def update(self, metric: float) -> float:
        s = self.state
        if metric < s["best"]:
            s["best"], s["bad"] = float(metric), 0
        else:
            s["bad"] += 1
            if s["bad"] > self.patience:
                s["scale"] = max(s["scale"] * self.factor, self.min_scale)
                s["bad"] = 0
        return s["scale"]


def learning_rate_at(schedule: Callable, step: int, scale: float) -> float:
    return float(schedule(step)) * scale
