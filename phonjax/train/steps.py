"""Jitted training/evaluation steps of the finetuning loop and the fresh training state.

state = {params, opt_state, ema, rng, step}; tparams = {"model": model parameters, "offsets": (n_types,) eV}.
The steps are pure functions of their inputs, compiled once per stage (static padded batch shapes), and
data-parallel over the mesh of a :class:`phonjax.train.parallel.DataParallel` (one device: a 1-device mesh).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from phonjax.train.fc_loss import hvp_on_rows, random_directions, reference_hvp, unit_directions
from phonjax.train.loss import combine, error_sums, loss_counts, loss_sums
from phonjax.train.model_api import Batch, TrainableModel, predict, total_energies
from phonjax.train.optim import ema_update
from phonjax.train.parallel import AXIS, DataParallel, data_parallel
from phonjax.xla_options import kernel_jit


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
                fc: FcTerm | None = None, dp: DataParallel | None = None):
    """Jitted ``train_step(state, batch, lr_scale) -> (state, terms)`` and
    ``eval_step(tparams, batch) -> (terms, error_sums)``. state = {params, opt_state, ema, rng, step}.

    ``batch`` is a global batch of ``dp`` (:meth:`DataParallel.batch`; default: a 1-device mesh of the
    default device, whose global batch is a plain padded batch): each device computes the masked loss sums
    and their gradient on its own sub-batch, scaled by the counts of real items of the whole batch, and one
    ``psum`` over the mesh axis reduces gradients and loss terms. State and parameters are replicated. The
    force-constant term (one structure) is evaluated on the replicated parameters outside the sharded part.
    """
    dp = dp or data_parallel(devices=jax.devices()[:1])
    rep, split = dp.replicated, dp.split

    def sharded(fn):
        return jax.shard_map(fn, mesh=dp.mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False)

    def _local_terms(tp, batch):
        counts = jax.lax.psum(loss_counts(batch.labels), AXIS)  # the whole global batch's real items
        pred = predict(model, tp, batch, with_stress=use_stress)
        return combine(loss_sums(pred, batch.labels, loss_cfg), counts, loss_cfg, use_stress), pred

    @sharded
    def data_grads(tp, batch):
        def local(p):
            terms = _local_terms(p, batch)[0]
            return terms["total"], terms
        (_, terms), grads = jax.value_and_grad(local, has_aux=True)(tp)
        return jax.lax.psum((grads, terms), AXIS)  # gradient reduction over devices

    @sharded
    def data_eval(tp, batch):
        terms, pred = _local_terms(tp, batch)
        return jax.lax.psum((terms, error_sums(pred, batch.labels)), AXIS)

    def fc_term(tp, key):
        n_rows = fc.fc.shape[0]
        dirs = (random_directions(key, fc.n_vectors, n_rows) if fc.n_vectors > 0
                else jnp.asarray(unit_directions(n_rows)))

        def e_of_pos(pos):
            return total_energies(model, tp, fc.batch, pos, fc.batch.cells)[0]

        return fc_loss_padded(e_of_pos, fc.batch.positions, fc.rows, fc.fc, dirs, fc.n_super)

    def train_step(state, batch, lr_scale):
        key, sub = jax.random.split(state["rng"])
        grads, terms = data_grads(state["params"], batch)
        if fc is not None:
            terms["fc"], g_fc = jax.value_and_grad(fc_term)(state["params"], sub)
            terms["total"] = terms["total"] + fc.weight * terms["fc"]
            grads = jax.tree_util.tree_map(lambda g, h: g + fc.weight * h, grads, g_fc)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        updates = jax.tree_util.tree_map(lambda u: u * jnp.asarray(lr_scale, u.dtype), updates)
        params = optax.apply_updates(state["params"], updates)
        ema = ema_update(state["ema"], params, ema_decay, state["step"]) if ema_decay else params
        return {"params": params, "opt_state": opt_state, "ema": ema, "rng": key,
                "step": state["step"] + 1}, terms

    return (kernel_jit(train_step, in_shardings=(rep, split, rep), out_shardings=rep),
            kernel_jit(data_eval, in_shardings=(rep, split), out_shardings=rep))


def build_fc_eval(model: TrainableModel, fc: FcTerm):
    """Jitted ``fc_eval(tparams) -> scalar``: the FC loss over all home-cell unit directions (validation)."""
    dirs = jnp.asarray(unit_directions(fc.fc.shape[0]))

    def fc_eval(tp):
        def e_of_pos(pos):
            return total_energies(model, tp, fc.batch, pos, fc.batch.cells)[0]
        return fc_loss_padded(e_of_pos, fc.batch.positions, fc.rows, fc.fc, dirs, fc.n_super)

    return kernel_jit(fc_eval)


def init_state(optimizer, tparams, seed: int) -> dict:
    """Fresh training state (copies of the parameters as EMA; raw uint32 PRNG key; step 0)."""
    return {"params": tparams, "opt_state": optimizer.init(tparams),
            "ema": jax.tree_util.tree_map(jnp.array, tparams),
            "rng": jax.random.PRNGKey(seed), "step": jnp.asarray(0, jnp.int64)}


def fc_loss_padded(e_of_pos, positions, rows, fc, directions, n_super):
    """fc_loss on a padded structure: the first ``n_super`` nodes are the supercell's atoms."""
    pred = hvp_on_rows(e_of_pos, positions, rows, directions)[:, :n_super]
    return jnp.mean((pred - reference_hvp(fc, directions)) ** 2)
