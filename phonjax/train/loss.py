"""Losses and error sums on padded batches: energy per atom, forces, stress; MSE or Huber.

Shapes (G graphs, N nodes, padded): energy (G,) eV, forces (N, 3) eV/Å, stress (G, 3, 3) eV/Å³
(ASE sign convention: σ = (1/V) ∂E/∂ε). Masks drop padded graphs/nodes and structures without a
stress label. Every mean is over real items only, so padding never changes the loss.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from phonjax.train.config import LossConfig


class Labels(NamedTuple):
    """DFT labels of a padded batch (see module docstring for shapes/units)."""

    energy: jnp.ndarray        # (G,)
    forces: jnp.ndarray        # (N, 3)
    stress: jnp.ndarray        # (G, 3, 3)
    n_atoms: jnp.ndarray       # (G,) float, 0 for padding graphs
    graph_mask: jnp.ndarray    # (G,) bool
    node_mask: jnp.ndarray     # (N,) bool
    stress_mask: jnp.ndarray   # (G,) bool: graph real and has a stress label


class Predictions(NamedTuple):
    energy: jnp.ndarray        # (G,)
    forces: jnp.ndarray        # (N, 3)
    stress: jnp.ndarray        # (G, 3, 3)


def _pointwise(err, kind: str, delta: float):
    if kind == "mse":
        return err * err
    a = jnp.abs(err)
    # Huber ×2 so that it equals err² (the MSE) for |err| ≤ δ and grows linearly beyond
    return 2.0 * jnp.where(a <= delta, 0.5 * err * err, delta * (a - 0.5 * delta))


def _masked_sum(values, mask):
    """Σ values over real items (mask broadcast over trailing axes) and their count."""
    m = mask.astype(values.dtype)
    while m.ndim < values.ndim:
        m = m[..., None]
    return jnp.sum(values * m), jnp.sum(m * jnp.ones_like(values))


def loss_counts(lab: Labels) -> dict:
    """Number of real items of each loss term (scalars): graphs, force components, stress components.
    Additive over sub-batches, so a data-parallel step sums them over devices before :func:`combine`."""
    e = lab.energy
    return {"energy": _masked_sum(jnp.zeros_like(e), lab.graph_mask)[1],
            "forces": _masked_sum(jnp.zeros_like(lab.forces), lab.node_mask)[1],
            "stress": _masked_sum(jnp.zeros_like(lab.stress), lab.stress_mask)[1]}


def loss_sums(pred: Predictions, lab: Labels, cfg: LossConfig) -> dict:
    """Σ of the pointwise losses over real items (scalars): ``energy`` (per atom), ``forces``, ``stress``."""
    n = jnp.maximum(lab.n_atoms, 1.0)
    pw = lambda err: _pointwise(err, cfg.kind, cfg.huber_delta)  # noqa: E731
    return {"energy": _masked_sum(pw((pred.energy - lab.energy) / n), lab.graph_mask)[0],
            "forces": _masked_sum(pw(pred.forces - lab.forces), lab.node_mask)[0],
            "stress": _masked_sum(pw(pred.stress - lab.stress), lab.stress_mask)[0]}


def combine(sums: dict, counts: dict, cfg: LossConfig, use_stress: bool = True) -> dict:
    """Weighted total loss and its parts (means = sums / counts). Linear in ``sums``: with the counts of a
    whole batch, the terms of its sub-batches add up to the terms of the batch."""
    out = {k: sums[k] / jnp.maximum(counts[k], 1.0) for k in ("energy", "forces")}
    total = cfg.energy_weight * out["energy"] + cfg.forces_weight * out["forces"]
    if use_stress and cfg.stress_weight > 0:
        out["stress"] = sums["stress"] / jnp.maximum(counts["stress"], 1.0)
        total = total + cfg.stress_weight * out["stress"]
    else:
        out["stress"] = jnp.zeros_like(total)
    out["total"] = total
    return out


def loss_terms(pred: Predictions, lab: Labels, cfg: LossConfig, use_stress: bool = True) -> dict:
    """Weighted total loss and its parts (scalars): ``energy`` (per atom), ``forces``, ``stress``."""
    return combine(loss_sums(pred, lab, cfg), loss_counts(lab), cfg, use_stress)


def error_sums(pred: Predictions, lab: Labels) -> dict:
    """Sums of absolute/squared errors and counts, to be accumulated over batches (see finalize)."""
    gm = lab.graph_mask.astype(pred.energy.dtype)
    nm = lab.node_mask.astype(pred.forces.dtype)[:, None]
    sm = lab.stress_mask.astype(pred.stress.dtype)[:, None, None]
    e_err = (pred.energy - lab.energy) / jnp.maximum(lab.n_atoms, 1.0)
    f_err = pred.forces - lab.forces
    s_err = pred.stress - lab.stress
    return {
        "e_abs": jnp.sum(jnp.abs(e_err) * gm), "e_sq": jnp.sum(e_err ** 2 * gm), "n_e": jnp.sum(gm),
        "f_abs": jnp.sum(jnp.abs(f_err) * nm), "f_sq": jnp.sum(f_err ** 2 * nm), "n_f": 3.0 * jnp.sum(nm),
        "s_abs": jnp.sum(jnp.abs(s_err) * sm), "n_s": 9.0 * jnp.sum(sm),
    }


def finalize_errors(sums: dict) -> dict:
    """MAE/RMSE from accumulated sums: e_mae, e_rmse (eV/atom), f_mae, f_rmse (eV/Å), s_mae (eV/Å³)."""
    def div(a, b):
        return float(a) / float(b) if float(b) > 0 else float("nan")
    return {
        "e_mae": div(sums["e_abs"], sums["n_e"]),
        "e_rmse": div(sums["e_sq"], sums["n_e"]) ** 0.5,
        "f_mae": div(sums["f_abs"], sums["n_f"]),
        "f_rmse": div(sums["f_sq"], sums["n_f"]) ** 0.5,
        "s_mae": div(sums["s_abs"], sums["n_s"]),
    }
