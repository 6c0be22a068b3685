"""The finetuning loop: stages → epochs → padded batches; validation, early stopping, checkpoints, metrics.

Entry point :func:`finetune`. Output directory layout::

    out_dir/config.yaml                       the resolved config
    out_dir/metrics.csv, metrics.json         one row per evaluated epoch (all stages)
    out_dir/learning_curve.png                written by :func:`plot_learning_curve` (best effort)
    out_dir/stages/<name>/checkpoints/<step>  periodic orbax checkpoints (state + meta)
    out_dir/stages/<name>/best/<step>         best-validation checkpoint
    out_dir/model/                            the finetuned phonjax model directory (best EMA weights)
    out_dir/model/BORN                        with data.short_range: the Born file of the dipole-subtracted labels

Determinism: batch order is a pure function of (seed, stage, epoch); the jitted step is deterministic on
CPU; resuming restores params, optimiser state, EMA, RNG key, step, epoch, early-stopping/plateau state and
history, so an interrupted + resumed run ends with bitwise the same parameters as an uninterrupted one.
The train and eval steps are compiled once per stage (static padded shapes; see ``FinetuneResult.compilations``).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from phonjax.config import to_dict
from phonjax.train.checkpoint import Checkpointer, CheckpointError
from phonjax.train.config import FinetuneConfig, FreezeConfig, StageConfig, load_finetune_config
from phonjax.train.data import (Capacities, Dataset, DatasetError, Frame, compute_capacities, composition_matrix,
                                epoch_order, load_splits)
from phonjax.train.fc_loss import FcReference, load_fc_reference, random_directions, unit_directions
from phonjax.train.loss import error_sums, finalize_errors, loss_terms
from phonjax.train.model_api import Batch, TrainableModel, make_batch, predict, total_energies
from phonjax.train.optim import PlateauScheduler, ema_update, make_optimizer, make_schedule, trainable_mask


@dataclass(frozen=True)
class StageResult:
    name: str
    epochs: int
    steps: int
    best_epoch: int
    best_metric: float
    stopped_early: bool


@dataclass(frozen=True)
class FinetuneResult:
    """Outcome of :func:`finetune`. ``params`` are the final training parameters (best EMA of the last
    stage, ``{"model", "offsets"}``); ``model_dir`` the exported phonjax model (None if interrupted)."""

    out_dir: Path
    model_dir: Path | None
    history: tuple[dict, ...] = field(repr=False)
    stages: tuple[StageResult, ...]
    energy_offsets: dict[str, float]
    params: object = field(repr=False)
    last_state: object = field(repr=False)
    compilations: dict = field(repr=False)
    interrupted: bool = False

    def __str__(self) -> str:
        lines = [f"finetuned model: {self.model_dir}" if self.model_dir else f"interrupted; resume from {self.out_dir}"]
        for s in self.stages:
            lines.append(f"  stage {s.name}: {s.epochs} epochs, {s.steps} steps, best epoch {s.best_epoch} "
                         f"(valid {s.best_metric:.4g}){', stopped early' if s.stopped_early else ''}")
        if self.history:
            h = self.history[-1]
            lines.append(f"  last validation: E MAE {1000 * h.get('valid_e_mae', float('nan')):.3g} meV/atom, "
                         f"F MAE {1000 * h.get('valid_f_mae', float('nan')):.3g} meV/Å, "
                         f"S MAE {1000 * h.get('valid_s_mae', float('nan')):.3g} meV/Å³")
        lines.append(f"  metrics: {self.out_dir / 'metrics.csv'}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
def _stages(cfg: FinetuneConfig) -> tuple[StageConfig, ...]:
    if cfg.stages:
        return cfg.stages
    return (StageConfig(name="main", train=cfg.data.train, valid=cfg.data.valid),)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(history: list[dict], out_dir: Path) -> None:
    """metrics.json (list of rows) and metrics.csv (union of keys as columns)."""
    _atomic_write(out_dir / "metrics.json", json.dumps(history, indent=1))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = out_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, out_dir / "metrics.csv")


def _plot_learning_curve(history, path):
    from phonjax.plot import plot_learning_curve
    return plot_learning_curve(history, path)


def _isolated_frame(z: int, box: float) -> Frame:
    return Frame(np.array([z]), np.zeros((1, 3)), np.eye(3) * box, 0.0, np.zeros((1, 3)), None, "isolated")


def model_energies(model: TrainableModel, tparams, frames, caps: Capacities, fn=None) -> np.ndarray:
    """Model energies (eV) of frames (batched with the given capacities)."""
    if fn is None:
        fn = jax.jit(lambda p, b: total_energies(model, p, b, b.positions, b.cells))
    out = []
    k = caps.n_graphs - 1
    for i in range(0, len(frames), k):
        chunk = frames[i:i + k]
        out.append(np.asarray(fn(tparams, make_batch(model, chunk, caps)))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros(0)


def energy_offsets(model: TrainableModel, tparams, train: Dataset, how: str, log: Callable) -> np.ndarray:
    """Per-type offsets (n_types,) eV aligning the model's energy zero with the DFT data.

    isolated_atoms: δ_t = E_iso^DFT(t) − E_model(isolated t) (falls back to ``fit`` when a species of the
    data lacks a reference); fit: min-norm least squares of E_DFT − E_model over the training
    compositions; none: zeros.
    """
    names = list(model.type_names)
    off = np.zeros(len(names))
    if how == "none":
        return off
    species = sorted(train.species())
    refs = train.isolated_atom_energies
    zero = {"model": tparams["model"], "offsets": jnp.zeros(len(names))}
    if how == "isolated_atoms" and all(s in refs for s in species):
        from ase.data import atomic_numbers
        box = max(40.0, 4.0 * float(getattr(model, "r_max", 10.0)))
        frames = [_isolated_frame(atomic_numbers[s], box) for s in species]
        sizes = [model.frame_sizes(f) for f in frames]
        caps = compute_capacities(sizes, len(frames))
        e_iso = model_energies(model, zero, frames, caps)
        for s, e in zip(species, e_iso):
            off[names.index(s)] = refs[s] - e
        log(f"energy offsets from isolated-atom references: "
            + ", ".join(f"{s} {off[names.index(s)]:+.4f} eV" for s in species))
        return off
    if how == "isolated_atoms":
        log(f"no isolated-atom energies for all of {species} (have {sorted(refs)}): fitting offsets instead")
    frames = list(train.frames)
    sizes = [model.frame_sizes(f) for f in frames]
    caps = compute_capacities(sizes, min(8, len(frames)))
    resid = np.array([f.energy for f in frames]) - model_energies(model, zero, frames, caps)
    A = composition_matrix(train, names)
    cols = np.flatnonzero(A.sum(0) > 0)
    sol = np.linalg.lstsq(A[:, cols], resid, rcond=None)[0]
    off[cols] = sol
    log("energy offsets fitted: " + ", ".join(f"{names[c]} {off[c]:+.4f} eV" for c in cols))
    return off


# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FcTerm:
    """Force-constant loss inputs: padded single-structure batch, home-cell rows, reference fc rows."""

    batch: Batch
    rows: jnp.ndarray
    fc: jnp.ndarray
    n_super: int
    weight: float
    n_vectors: int


def build_steps(model: TrainableModel, loss_cfg, optimizer, ema_decay: float | None, use_stress: bool,
                fc: FcTerm | None = None):
    """Jitted ``train_step(state, batch, lr_scale) -> (state, terms)`` and
    ``eval_step(tparams, batch) -> (terms, error_sums)``. state = {params, opt_state, ema, rng, step}."""

    def loss_fn(tp, batch, key):
        pred = predict(model, tp, batch, with_stress=use_stress)
        terms = loss_terms(pred, batch.labels, loss_cfg, use_stress)
        if fc is not None:
            n_rows = fc.fc.shape[0]
            dirs = (random_directions(key, fc.n_vectors, n_rows) if fc.n_vectors > 0
                    else jnp.asarray(unit_directions(n_rows)))

            def e_of_pos(pos):
                return total_energies(model, tp, fc.batch, pos, fc.batch.cells)[0]

            terms["fc"] = fc_loss_padded(e_of_pos, fc.batch.positions, fc.rows, fc.fc, dirs, fc.n_super)
            terms["total"] = terms["total"] + fc.weight * terms["fc"]
        return terms["total"], terms

    def train_step(state, batch, lr_scale):
        key, sub = jax.random.split(state["rng"])
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, sub)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        updates = jax.tree_util.tree_map(lambda u: u * jnp.asarray(lr_scale, u.dtype), updates)
        params = optax.apply_updates(state["params"], updates)
        ema = ema_update(state["ema"], params, ema_decay, state["step"]) if ema_decay else params
        return {"params": params, "opt_state": opt_state, "ema": ema, "rng": key,
                "step": state["step"] + 1}, terms

    def eval_step(tp, batch):
        pred = predict(model, tp, batch, with_stress=use_stress)
        terms = loss_terms(pred, batch.labels, loss_cfg, use_stress)
        return terms, error_sums(pred, batch.labels)

    return jax.jit(train_step), jax.jit(eval_step)


def build_fc_eval(model: TrainableModel, fc: FcTerm):
    """Jitted ``fc_eval(tparams) -> scalar``: the FC loss over all home-cell unit directions (validation)."""
    dirs = jnp.asarray(unit_directions(fc.fc.shape[0]))

    def fc_eval(tp):
        def e_of_pos(pos):
            return total_energies(model, tp, fc.batch, pos, fc.batch.cells)[0]
        return fc_loss_padded(e_of_pos, fc.batch.positions, fc.rows, fc.fc, dirs, fc.n_super)

    return jax.jit(fc_eval)


def init_state(optimizer, tparams, seed: int) -> dict:
    """Fresh training state (copies of the parameters as EMA; raw uint32 PRNG key; step 0)."""
    return {"params": tparams, "opt_state": optimizer.init(tparams),
            "ema": jax.tree_util.tree_map(jnp.array, tparams),
            "rng": jax.random.PRNGKey(seed), "step": jnp.asarray(0, jnp.int64)}


# ----------------------------------------------------------------------------------------------
class _Stage:
    """Everything of one stage that stays fixed while it trains (data, shapes, compiled steps)."""

    def __init__(self, model: TrainableModel, cfg: FinetuneConfig, stage: StageConfig, index: int,
                 fc_ref: FcReference | None, log: Callable, short_range=None):
        self.model, self.cfg, self.stage, self.index, self.log = model, cfg, stage, index, log
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
        self.caps = compute_capacities(sizes, d.batch_size)
        self.use_stress = d.use_stress and cfg.loss.stress_weight > 0 and any(
            f.stress is not None for f in self.train.frames)
        self.max_epochs = stage.max_epochs or cfg.training.max_epochs
        self.n_batches = math.ceil(len(self.train) / d.batch_size)
        self.total_steps = self.max_epochs * self.n_batches
        self.schedule = make_schedule(cfg.optim, self.total_steps, stage.learning_rate)
        self.freeze: FreezeConfig = stage.freeze or cfg.freeze
        self.valid_batches = [make_batch(model, [self.valid.frames[i] for i in b], self.caps, self.use_stress)
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
            f"{self.n_batches} batches/epoch, capacities {self.caps}")

    def build(self, tparams):
        self.mask = trainable_mask(tparams, self.freeze, never=tuple(getattr(self.model, "never_train", ())))
        self.optimizer = make_optimizer(self.cfg.optim, self.schedule, self.mask)
        fc = None
        if self.fc_batch is not None:
            fc = FcTerm(self.fc_batch, self.fc_rows, self.fc, self.fc_n, self.cfg.loss.fc.weight,
                        self.cfg.loss.fc.n_vectors)
        self.train_step, self.eval_step = build_steps(self.model, self.cfg.loss, self.optimizer,
                                                      self.cfg.optim.ema_decay, self.use_stress, fc)
        self.fc_eval = None if fc is None else (build_fc_eval(self.model, fc), fc.weight)

    def init_state(self, tparams, seed: int):
        return init_state(self.optimizer, tparams, seed + 1000 * self.index)

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


def fc_loss_padded(e_of_pos, positions, rows, fc, directions, n_super):
    """fc_loss on a padded structure: the first ``n_super`` nodes are the supercell's atoms."""
    from phonjax.train.fc_loss import hvp_on_rows, reference_hvp
    pred = hvp_on_rows(e_of_pos, positions, rows, directions)[:, :n_super]
    return jnp.mean((pred - reference_hvp(fc, directions)) ** 2)


# ----------------------------------------------------------------------------------------------
def finetune(config: FinetuneConfig | str | Path, *, resume: bool = False, overrides: list[str] | None = None,
             model: TrainableModel | None = None, max_steps: int | None = None,
             progress: bool | None = None, log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Finetune ``config.model`` (or the given TrainableModel) on the config's data; see module doc.

    resume: continue from the checkpoints in ``out_dir`` (bit-for-bit). max_steps: stop after this many
    optimiser steps in this call, without saving (simulates an interruption; used by tests).
    Returns a FinetuneResult; the finetuned model directory is ``out_dir/model``.
    """
    if not isinstance(config, FinetuneConfig):
        config = load_finetune_config(config, overrides)
    elif overrides:
        from phonjax.config import apply_overrides, from_dict
        config = from_dict(FinetuneConfig, apply_overrides(to_dict(config), overrides))
    cfg = config
    log = log or (lambda msg: print(f"[finetune] {msg}", flush=True))
    show = cfg.training.progress if progress is None else progress
    out = Path(cfg.out_dir)
    stages = _stages(cfg)
    if not resume and (out / "stages").exists() and any((out / "stages").rglob("_CHECKPOINT_METADATA")):
        raise CheckpointError(f"{out} already holds checkpoints: resume, or choose another out_dir")
    if model is None:
        from phonjax.models import load_trainable  # the model directory's family's adapter
        model = load_trainable(cfg.model)
    if cfg.training.init == "random":  # control run: same architecture, fresh parameters
        if not hasattr(model, "reinitialized"):
            from phonjax.config import ConfigError
            raise ConfigError(f"training.init: random needs a model that can re-initialise itself "
                              f"({type(model).__name__} cannot)")
        model = model.reinitialized(cfg.training.seed)
        log(f"training.init = random: parameters re-initialised (seed {cfg.training.seed})")
    short_range = None
    if cfg.data.short_range is not None:
        from phonjax.train.short_range import load_short_range
        short_range = load_short_range(cfg.data.short_range)
    fc_ref = None
    if cfg.loss.fc.weight > 0:
        fcc = cfg.loss.fc
        fc_ref = load_fc_reference(fcc.reference, force_sets=fcc.force_sets, force_constants=fcc.force_constants,
                                   supercell_matrix=None if fcc.supercell is None else list(fcc.supercell))
        from ase.data import chemical_symbols
        unknown = sorted({chemical_symbols[int(z)] for z in fc_ref.numbers} - set(model.type_names))
        if unknown:
            raise DatasetError(f"{cfg.loss.fc.reference}: species {unknown} unknown to the model")
        if short_range is not None:
            from phonjax.train.short_range import subtract_fc_reference
            fc_ref = subtract_fc_reference(fc_ref, short_range)

    # build every stage's data first: all bad input fails before any training
    runners = [_Stage(model, cfg, st, k, fc_ref, log, short_range) for k, st in enumerate(stages)]
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))

    tparams = {"model": model.initial_params(), "offsets": jnp.zeros(len(model.type_names))}
    history: list[dict] = []
    results: list[StageResult] = []
    steps_this_call = 0
    compilations = {}
    offsets_np = None
    last_state = None
    for k, run in enumerate(runners):
        sdir = out / "stages" / run.stage.name
        ckpt = Checkpointer(sdir / "checkpoints", cfg.training.keep_checkpoints)
        best = Checkpointer(sdir / "best", 1)
        run.build(tparams)
        state = run.init_state(tparams, cfg.training.seed)
        meta = None
        if resume and ckpt.latest_step() is not None:
            state, meta = ckpt.restore(state)
            history = [r for r in meta["history"]]
            log(f"stage {run.stage.name}: resumed at step {meta['step']} (epoch {meta['epoch']})")
        elif k == 0:
            off = energy_offsets(model, tparams, run.train, cfg.training.energy_reference, log)
            tparams = {"model": tparams["model"], "offsets": jnp.asarray(off)}
            state = run.init_state(tparams, cfg.training.seed)
        if meta is None:
            meta = {"step": 0, "epoch": 0, "best_metric": 1e300, "best_epoch": 0, "bad": 0,
                    "finished": False, "stopped_early": False, "plateau": None, "history": history}
            v0 = run.evaluate(state["params"])  # epoch 0: the starting point of the learning curve
            history.append({"stage": run.stage.name, "epoch": 0, "step": 0, "lr": 0.0,
                            "train_loss": float("nan"), **{f"valid_{k2}": v2 for k2, v2 in v0.items()}})
            # the starting model is the first candidate for "best": finetuning never returns something worse
            if math.isfinite(v0[cfg.training.monitor]):
                meta.update(best_metric=v0[cfg.training.monitor], best_epoch=0)
                best.save(0, state, meta)
        plateau = PlateauScheduler(cfg.optim.plateau_factor, cfg.optim.plateau_patience,
                                   cfg.optim.plateau_min_lr_ratio, meta["plateau"])
        interrupted = False
        while not meta["finished"]:
            epoch = meta["epoch"]
            order = epoch_order(len(run.train), cfg.data.batch_size, cfg.training.seed, k, epoch)
            bar = None
            if show:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(order), desc=f"{run.stage.name} epoch {epoch + 1}/{run.max_epochs}",
                           leave=False)
            losses, n_struct, t0 = [], 0, time.perf_counter()
            scale = plateau.state["scale"] if cfg.optim.schedule == "plateau" else 1.0
            scale_arr = jnp.asarray(scale, jnp.float64)
            for bidx in order:
                if max_steps is not None and steps_this_call >= max_steps:
                    interrupted = True
                    break
                # host work (neighbour lists, padding) of the next batch overlaps the device's current step:
                # nothing below waits for the device except the occasional progress-bar read of an old loss
                batch = make_batch(model, [run.train.frames[i] for i in bidx], run.caps, run.use_stress)
                state, terms = run.train_step(state, batch, scale_arr)
                steps_this_call += 1
                losses.append(terms["total"])
                n_struct += len(bidx)
                if bar is not None:
                    bar.update(1)
                    if len(losses) >= 2 and len(losses) % 5 == 0:
                        bar.set_postfix(loss=f"{float(losses[-2]):.3g}")
            if bar is not None:
                bar.close()
            if interrupted:
                break
            loss_vals = np.asarray(jax.device_get(losses), dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(loss_vals))
            if bad.size:
                raise FloatingPointError(f"stage {run.stage.name}: loss became {loss_vals[bad[0]]} in epoch "
                                         f"{epoch + 1}, batch {bad[0]} (lower optim.learning_rate?)")
            tr_loss, tr_n = float(loss_vals.sum()), len(loss_vals)
            jax.block_until_ready(state["params"])
            t_train = time.perf_counter() - t0
            meta["epoch"] = epoch = epoch + 1
            meta["step"] = int(state["step"])
            if epoch % cfg.training.eval_every == 0 or epoch == run.max_epochs:
                eval_params = state["ema"] if cfg.optim.ema_decay else state["params"]
                v = run.evaluate(eval_params)
                row = {"stage": run.stage.name, "epoch": epoch, "step": meta["step"],
                       "lr": float(run.schedule(meta["step"])) * scale, "train_loss": tr_loss / max(tr_n, 1),
                       "train_time_s": t_train, "structures_per_s": n_struct / max(t_train, 1e-9)}
                row.update({f"valid_{k2}": v2 for k2, v2 in v.items()})
                metric = v[cfg.training.monitor]
                if cfg.optim.schedule == "plateau":
                    plateau.update(metric)
                if metric < meta["best_metric"] - cfg.training.min_delta:
                    meta.update(best_metric=metric, best_epoch=epoch, bad=0)
                    best.save(meta["step"], state, {**meta, "plateau": plateau.state})
                else:
                    meta["bad"] += 1
                history.append(row)
                meta["history"] = history
                write_metrics(history, out)
                log(f"{run.stage.name} epoch {epoch}: train {row['train_loss']:.4g} valid {v['loss']:.4g} "
                    f"E {1000 * v['e_mae']:.3g} meV/at F {1000 * v['f_mae']:.3g} meV/Å")
                if cfg.training.patience is not None and meta["bad"] > cfg.training.patience:
                    meta.update(finished=True, stopped_early=True)
            if epoch >= run.max_epochs:
                meta["finished"] = True
            meta["plateau"] = plateau.state
            if meta["finished"] or epoch % cfg.training.checkpoint_every == 0:
                ckpt.save(meta["step"], state, meta)
        compilations[run.stage.name] = {"train_step": run.train_step._cache_size(),
                                        "eval_step": run.eval_step._cache_size()}
        last_state = state
        if interrupted:
            ckpt.close()
            best.close()
            return FinetuneResult(out, None, tuple(history), tuple(results), {}, state["params"], state,
                                  compilations, interrupted=True)
        best_state, _ = best.restore(state)
        tparams = best_state["ema"] if cfg.optim.ema_decay else best_state["params"]
        results.append(StageResult(run.stage.name, meta["epoch"], meta["step"], meta["best_epoch"],
                                   meta["best_metric"], meta["stopped_early"]))
        ckpt.close()
        best.close()
    offsets_np = np.asarray(tparams["offsets"])
    offsets = {s: float(o) for s, o in zip(model.type_names, offsets_np)}
    model_dir = out / "model"
    meta = {"finetune": {"config": to_dict(cfg), "stages": [r.__dict__ for r in results], "energy_offsets": offsets}}
    if short_range is not None:
        from phonjax.train.short_range import model_record
        meta["long_range"] = model_record(short_range)
    elif isinstance(getattr(getattr(model, "model", None), "metadata", None), dict) and \
            model.model.metadata.get("long_range"):
        log("the starting model was short-range but data.short_range is not set: the finetuned model is "
            "trained on full labels and no longer recorded as short-range")
        meta["long_range"] = None
    model.export(tparams, model_dir, meta)
    if short_range is not None:
        from phonjax.train.short_range import write_model_born
        write_model_born(short_range, model_dir)
    try:
        _plot_learning_curve(history, out / "learning_curve.png")
    except Exception as e:  # noqa: BLE001 - plotting is best effort
        log(f"learning curve not plotted: {e}")
    return FinetuneResult(out, model_dir, tuple(history), tuple(results), offsets, tparams, last_state,
                          compilations)
