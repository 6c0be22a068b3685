"""The finetuning loop: stages → epochs → padded batches; validation, early stopping, checkpoints, metrics.

Entry point :func:`finetune`. Output directory layout::

    out_dir/config.yaml                       the resolved config
    out_dir/metrics.csv, metrics.json         one row per evaluated epoch (all stages)
    out_dir/learning_curve.png                written by :func:`plot_learning_curve` (best effort)
    out_dir/stages/<name>/checkpoints/<step>  periodic orbax checkpoints (state + meta + sha256 manifest)
    out_dir/stages/<name>/best/<step>         best-validation checkpoint
    out_dir/model/                            the finetuned phonjax model directory (best EMA weights)
    out_dir/model/BORN                        with data.short_range: the Born file of the dipole-subtracted labels

Determinism: batch order is a pure function of (seed, stage, epoch); the jitted step is deterministic on
CPU; resuming restores params, optimiser state, EMA, RNG key, step, epoch, early-stopping/plateau state and
history, so an interrupted + resumed run ends with bitwise the same parameters as an uninterrupted one.
The train and eval steps are compiled once per stage (static padded shapes; see ``FinetuneResult.compilations``).

Devices: every batch is split over the devices of ``cfg.parallel`` (default: all JAX sees) and the state is
replicated (:mod:`phonjax.train.parallel`); checkpoints hold the replicated state once and are restored onto
the mesh, so resuming is bit-for-bit on the same device count (other counts agree to rounding).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from phonjax.config import to_dict
from phonjax.train.checkpoint import Checkpointer, CheckpointError  # noqa: F401 - CheckpointError re-exported
from phonjax.train.config import FinetuneConfig, StageConfig, load_finetune_config
from phonjax.train.data import DatasetError, epoch_order
from phonjax.train.fc_loss import load_fc_reference
from phonjax.train.model_api import TrainableModel
from phonjax.train.offsets import energy_offsets, model_energies  # noqa: F401 - public names of the loop
from phonjax.train.optim import PlateauScheduler
from phonjax.train.parallel import data_parallel, initialize_distributed
from phonjax.train.run_dir import (atomic_write, check_fresh_start, check_resume_config, clear_previous_run,
                                  write_metrics)
from phonjax.train.stage import Stage
from phonjax.train.steps import build_steps, init_state  # noqa: F401 - public names of the loop


class TrainingDivergedError(RuntimeError):
    """The training loss or the parameters became non-finite (NaN/inf); the last good checkpoint is kept."""


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


def _plot_learning_curve(history, path):
    from phonjax.plot import plot_learning_curve
    return plot_learning_curve(history, path)


def _resolve_config(config, overrides) -> FinetuneConfig:
    if not isinstance(config, FinetuneConfig):
        return load_finetune_config(config, overrides)
    if overrides:
        from phonjax.config import apply_overrides, from_dict
        return from_dict(FinetuneConfig, apply_overrides(to_dict(config), overrides))
    return config


def _load_inputs(cfg: FinetuneConfig, model: TrainableModel | None, log: Callable):
    """(model, short_range, fc_ref): the starting model (re-initialised for init: random), the Born data of
    data.short_range and the force-constant reference of loss.fc (None when not configured)."""
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
    return model, short_range, fc_ref


@dataclass
class _Run:
    """Run-wide mutable state shared by the stages of one :func:`finetune` call."""

    cfg: FinetuneConfig
    model: TrainableModel
    out: Path
    log: Callable[[str], None]
    show: bool
    max_steps: int | None
    history: list = field(default_factory=list)
    steps_this_call: int = 0
    compilations: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
def finetune(config: FinetuneConfig | str | Path, *, resume: bool = False, overwrite: bool = False,
             overrides: list[str] | None = None, model: TrainableModel | None = None,
             max_steps: int | None = None, progress: bool | None = None,
             log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Finetune ``config.model`` (or the given TrainableModel) on the config's data; see module doc.

    resume: continue from the checkpoints in ``out_dir`` (bit-for-bit; a corrupt newest checkpoint is
    named and the next older intact one used). overwrite: start afresh, removing a previous run's outputs
    (a directory with training progress is otherwise refused; one with only the step-0 checkpoint of a
    failed start is not). max_steps: stop after this many optimiser steps in this call, without saving
    (simulates an interruption; used by tests). Returns a FinetuneResult; the finetuned model directory is
    ``out_dir/model``. Raises TrainingDivergedError when the loss or the parameters become non-finite.
    """
    cfg = _resolve_config(config, overrides)
    log = log or (lambda msg: print(f"[finetune] {msg}", flush=True))
    if resume and overwrite:
        from phonjax.config import ConfigError
        raise ConfigError("--resume and --overwrite exclude each other: continue the run, or start afresh")
    out = Path(cfg.out_dir)
    if resume:
        check_resume_config(out, to_dict(cfg))
    else:
        check_fresh_start(out, overwrite=overwrite)
    if initialize_distributed(cfg.parallel):  # multi-host: before any other JAX call
        log(f"jax.distributed initialised: process {jax.process_index()} of {jax.process_count()}")
    dp = data_parallel(cfg.parallel)
    if dp.n_devices > 1:
        log(f"data-parallel over {dp.n_devices} {dp.mesh.devices.flat[0].platform} devices "
            f"(batch of {cfg.data.batch_size} split; parameters and optimiser state replicated)")
    model, short_range, fc_ref = _load_inputs(cfg, model, log)
    # build every stage's data first: all bad input fails before any training (or any file is removed)
    runners = [Stage(model, cfg, st, k, fc_ref, log, dp, short_range) for k, st in enumerate(_stages(cfg))]
    if not resume:
        clear_previous_run(out, overwrite=overwrite, log=log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))

    run = _Run(cfg, model, out, log, cfg.training.progress if progress is None else progress, max_steps)
    tparams = {"model": model.initial_params(), "offsets": jnp.zeros(len(model.type_names))}
    results: list[StageResult] = []
    state = None
    for k, stage in enumerate(runners):
        tparams, state, result = _run_stage(run, k, stage, tparams, resume)
        if result is None:  # interrupted (max_steps)
            return FinetuneResult(out, None, tuple(run.history), tuple(results), {}, state["params"], state,
                                  run.compilations, interrupted=True)
        results.append(result)
    return _export(run, tparams, state, results, short_range)


def _run_stage(run: _Run, k: int, stage: Stage, tparams, resume: bool):
    """Train one stage to its end (or to max_steps): (tparams of its best checkpoint, last state,
    StageResult), or (tparams, state, None) when interrupted."""
    cfg = run.cfg
    sdir = run.out / "stages" / stage.stage.name
    with Checkpointer(sdir / "checkpoints", cfg.training.keep_checkpoints) as ckpt, \
            Checkpointer(sdir / "best", 1) as best:
        stage.build(tparams)
        state, meta, tparams = _start_stage(run, k, stage, tparams, ckpt, best, resume)
        plateau = PlateauScheduler(cfg.optim.plateau_factor, cfg.optim.plateau_patience,
                                   cfg.optim.plateau_min_lr_ratio, meta["plateau"])
        interrupted = False
        while not meta["finished"] and not interrupted:
            state, interrupted = _run_epoch(run, k, stage, state, meta, plateau, ckpt, best)
        run.compilations[stage.stage.name] = {"train_step": stage.train_step._cache_size(),
                                              "eval_step": stage.eval_step._cache_size()}
        if interrupted:
            return tparams, state, None
        best_state, _ = best.restore(state, log=run.log)
    tparams = best_state["ema"] if cfg.optim.ema_decay else best_state["params"]
    return tparams, state, StageResult(stage.stage.name, meta["epoch"], meta["step"], meta["best_epoch"],
                                       meta["best_metric"], meta["stopped_early"])


def _start_stage(run: _Run, k: int, stage: Stage, tparams, ckpt: Checkpointer, best: Checkpointer,
                 resume: bool):
    """(state, meta, tparams) at the start of a stage: restored from its newest intact checkpoint when
    resuming, else fresh (the first stage fits the energy offsets; the start is evaluated as epoch 0 and
    saved as the first "best" candidate)."""
    cfg = run.cfg
    state = stage.init_state(tparams, cfg.training.seed)
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state, log=run.log)
        state = stage.dp.replicate(state)  # saved from the replicated arrays; back onto the mesh
        run.history[:] = list(meta["history"])
        run.log(f"stage {stage.stage.name}: resumed at step {meta['step']} (epoch {meta['epoch']})")
        return state, meta, tparams
    if k == 0:
        off = energy_offsets(run.model, tparams, stage.train, cfg.training.energy_reference, run.log)
        tparams = {"model": tparams["model"], "offsets": jnp.asarray(off)}
        state = stage.init_state(tparams, cfg.training.seed)
    meta = {"step": 0, "epoch": 0, "best_metric": 1e300, "best_epoch": 0, "bad": 0,
            "finished": False, "stopped_early": False, "plateau": None, "history": run.history}
    v0 = stage.evaluate(state["params"])  # epoch 0: the starting point of the learning curve
    run.history.append({"stage": stage.stage.name, "epoch": 0, "step": 0, "lr": 0.0,
                        "train_loss": float("nan"), **{f"valid_{k2}": v2 for k2, v2 in v0.items()}})
    # the starting model is the first candidate for "best": finetuning never returns something worse
    if math.isfinite(v0[cfg.training.monitor]):
        meta.update(best_metric=v0[cfg.training.monitor], best_epoch=0)
        best.save(0, state, meta)
    return state, meta, tparams


def _train_batches(run: _Run, k: int, stage: Stage, state, epoch: int, scale: float):
    """One pass over the epoch's batches: (state, per-batch losses (device scalars), structures, seconds,
    interrupted)."""
    order = epoch_order(len(stage.train), run.cfg.data.batch_size, run.cfg.training.seed, k, epoch)
    bar = None
    if run.show:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(order), desc=f"{stage.stage.name} epoch {epoch + 1}/{stage.max_epochs}", leave=False)
    losses, n_struct, t0 = [], 0, time.perf_counter()
    scale_arr = jnp.asarray(scale, jnp.float64)
    interrupted = False
    try:
        for bidx in order:
            if run.max_steps is not None and run.steps_this_call >= run.max_steps:
                interrupted = True
                break
            # host work (neighbour lists, padding) of the next batch overlaps the device's current step:
            # nothing below waits for the device except the occasional progress-bar read of an old loss
            batch = stage.batch([stage.train.frames[i] for i in bidx])  # split over the devices
            state, terms = stage.train_step(state, batch, scale_arr)
            run.steps_this_call += 1
            losses.append(terms["total"])
            n_struct += len(bidx)
            if bar is not None:
                bar.update(1)
                if len(losses) >= 2 and len(losses) % 5 == 0:
                    bar.set_postfix(loss=f"{float(losses[-2]):.3g}")
    finally:
        if bar is not None:
            bar.close()
    jax.block_until_ready(state["params"])
    return state, losses, n_struct, time.perf_counter() - t0, interrupted


def _check_finite(run: _Run, stage: Stage, state, loss_vals: np.ndarray, meta: dict, ckpt: Checkpointer) -> None:
    """TrainingDivergedError (one line: what, where, the last good checkpoint, what to do) when a loss of
    the epoch or a parameter after it is not finite. Nothing of the bad epoch is saved."""
    bad = np.flatnonzero(~np.isfinite(loss_vals))
    if bad.size:
        what = f"the training loss became {loss_vals[bad[0]]} at step {meta['step'] + bad[0] + 1}"
    elif not all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state["params"])):
        what = f"the parameters became non-finite by step {meta['step'] + len(loss_vals)}"
    else:
        return
    lr = stage.stage.learning_rate or run.cfg.optim.learning_rate
    last = ckpt.latest_step()
    kept = (f"the last good checkpoint {ckpt.step_dir(last)} is kept (rerun afresh with --overwrite, or "
            "continue from it with --resume)") if last is not None else \
        "nothing beyond the starting model was saved, so a plain rerun starts afresh"
    raise TrainingDivergedError(
        f"training diverged in stage {stage.stage.name}: {what} (epoch {meta['epoch'] + 1}); lower the "
        f"learning rate (now {lr:g}; e.g. --set optim.learning_rate={lr / 10:g}); {kept}")


def _run_epoch(run: _Run, k: int, stage: Stage, state, meta: dict, plateau: PlateauScheduler,
               ckpt: Checkpointer, best: Checkpointer):
    """Train one epoch, then evaluate (every eval_every), track the best, stop early, checkpoint.
    Returns (state, interrupted); ``meta`` is updated in place."""
    cfg = run.cfg
    scale = plateau.state["scale"] if cfg.optim.schedule == "plateau" else 1.0
    state, losses, n_struct, t_train, interrupted = _train_batches(run, k, stage, state, meta["epoch"], scale)
    if interrupted:
        return state, True
    loss_vals = np.asarray(jax.device_get(losses), dtype=np.float64)
    _check_finite(run, stage, state, loss_vals, meta, ckpt)
    meta["epoch"] = epoch = meta["epoch"] + 1
    meta["step"] = int(state["step"])
    if epoch % cfg.training.eval_every == 0 or epoch == stage.max_epochs:
        v = stage.evaluate(state["ema"] if cfg.optim.ema_decay else state["params"])
        row = {"stage": stage.stage.name, "epoch": epoch, "step": meta["step"],
               "lr": float(stage.schedule(meta["step"])) * scale,
               "train_loss": float(loss_vals.sum()) / max(len(loss_vals), 1),
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
        run.history.append(row)
        meta["history"] = run.history
        write_metrics(run.history, run.out)
        run.log(f"{stage.stage.name} epoch {epoch}: train {row['train_loss']:.4g} valid {v['loss']:.4g} "
                f"E {1000 * v['e_mae']:.3g} meV/at F {1000 * v['f_mae']:.3g} meV/Å")
        if cfg.training.patience is not None and meta["bad"] > cfg.training.patience:
            meta.update(finished=True, stopped_early=True)
    if epoch >= stage.max_epochs:
        meta["finished"] = True
    meta["plateau"] = plateau.state
    if meta["finished"] or epoch % cfg.training.checkpoint_every == 0:
        ckpt.save(meta["step"], state, meta)
    return state, False


def _export(run: _Run, tparams, last_state, results: list[StageResult], short_range) -> FinetuneResult:
    """Write the finetuned model (best EMA weights of the last stage, offsets folded in) and the plot."""
    cfg, model, out = run.cfg, run.model, run.out
    offsets = {s: float(o) for s, o in zip(model.type_names, np.asarray(tparams["offsets"]))}
    model_dir = out / "model"
    meta = {"finetune": {"config": to_dict(cfg), "stages": [r.__dict__ for r in results], "energy_offsets": offsets}}
    if short_range is not None:
        from phonjax.train.short_range import model_record
        meta["long_range"] = model_record(short_range)
    elif isinstance(getattr(getattr(model, "model", None), "metadata", None), dict) and \
            model.model.metadata.get("long_range"):
        run.log("the starting model was short-range but data.short_range is not set: the finetuned model is "
                "trained on full labels and no longer recorded as short-range")
        meta["long_range"] = None
    model.export(tparams, model_dir, meta)
    if short_range is not None:
        from phonjax.train.short_range import write_model_born
        write_model_born(short_range, model_dir)
    try:
        _plot_learning_curve(run.history, out / "learning_curve.png")
    except Exception as e:  # noqa: BLE001 - plotting is best effort
        run.log(f"learning curve not plotted: {e}")
    return FinetuneResult(out, model_dir, tuple(run.history), tuple(results), offsets, tparams, last_state,
                          run.compilations)
