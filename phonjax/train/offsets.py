"""Per-type energy offsets aligning a model's energy zero with the DFT labels (eV).

The DFT energies of a dataset carry the pseudopotentials' reference, the model's the pretraining data's:
a per-type constant δ_t (eV) added to every atom of type t absorbs the difference before training.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.train.data import Capacities, Dataset, Frame, composition_matrix, compute_capacities
from phonjax.train.model_api import TrainableModel, make_batch, total_energies


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
        log("energy offsets from isolated-atom references: "
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
