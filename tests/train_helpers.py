"""Test helpers for the finetuning tests: a tiny analytic trainable potential and synthetic datasets.

``PairModel`` implements phonjax.train.model_api.TrainableModel with a smooth species-pair
Buckingham-like potential (independent of the NequIP code) so the training machinery (resume, compile
counts, losses) can be checked in seconds; labels come from a *teacher* with other parameters.
"""
from __future__ import annotations

import json
from pathlib import Path

import ase
import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from vesin import NeighborList

from phonjax.train.data import Capacities


def _neighbours(frame, r_cut):
    i, j, S = NeighborList(cutoff=r_cut, full_list=True).compute(
        frame.positions, frame.cell, True, quantities="ijS")
    return i, j, S


class PairModel:
    """E = Σ_i e0[t_i] + ½ Σ_{i≠j, r<rc} A[t_i,t_j] exp(−r/ρ[t_i,t_j]) · fcut(r); params e0, logA, logrho."""

    r_max = 4.0

    def __init__(self, type_names=("Li", "F"), seed=0, scale=1.0, r_max=4.0):
        self.type_names = tuple(type_names)
        self.r_max = float(r_max)
        n = len(self.type_names)
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(n, n)) * 0.3
        r = rng.normal(size=(n, n)) * 0.1
        self._params = {"per_type_energy_scale_shift": {"shifts": jnp.asarray(rng.normal(size=n))},
                        "pair": {"logA": jnp.asarray(np.log(20.0 * scale) + a + a.T),
                                 "logrho": jnp.asarray(np.log(0.6) + r + r.T)}}

    def initial_params(self):
        return jax.tree_util.tree_map(jnp.array, self._params)

    def frame_sizes(self, frame):
        return frame.n_atoms, len(_neighbours(frame, self.r_max)[0])

    def build_graph(self, frames, caps: Capacities):
        E = caps.n_edges
        snd = np.full(E, caps.n_nodes - 1, np.int32)
        rcv = np.full(E, caps.n_nodes - 1, np.int32)
        shifts = np.zeros((E, 3))
        emask = np.zeros(E, bool)
        o_n = o_e = 0
        for f in frames:
            i, j, S = _neighbours(f, self.r_max)
            m = len(i)
            rcv[o_e:o_e + m], snd[o_e:o_e + m] = i + o_n, j + o_n
            shifts[o_e:o_e + m], emask[o_e:o_e + m] = S, True
            o_n += f.n_atoms
            o_e += m
        tidx = {s: k for k, s in enumerate(self.type_names)}
        from ase.data import chemical_symbols
        types = np.zeros(caps.n_nodes, np.int32)
        ng = np.full(caps.n_nodes, caps.n_graphs - 1, np.int32)
        o = 0
        for g, f in enumerate(frames):
            types[o:o + f.n_atoms] = [tidx[chemical_symbols[z]] for z in f.numbers]
            ng[o:o + f.n_atoms] = g
            o += f.n_atoms
        return {"senders": jnp.asarray(snd), "receivers": jnp.asarray(rcv), "shifts": jnp.asarray(shifts),
                "edge_mask": jnp.asarray(emask), "types": jnp.asarray(types), "node_graph": jnp.asarray(ng),
                "node_mask": jnp.asarray(np.arange(caps.n_nodes) < o)}

    def energies(self, params, graph, positions, cells):
        s, r = graph["senders"], graph["receivers"]
        cell_e = cells[graph["node_graph"][r]]
        vec = positions[s] - positions[r] + jnp.einsum("ei,eij->ej", graph["shifts"], cell_e)
        m = graph["edge_mask"]
        d2 = jnp.where(m, jnp.sum(vec * vec, axis=1), 1.0)
        d = jnp.sqrt(d2)
        ti, tj = graph["types"][r], graph["types"][s]
        A = jnp.exp(params["pair"]["logA"])[ti, tj]
        rho = jnp.exp(params["pair"]["logrho"])[ti, tj]
        x = jnp.clip(d / self.r_max, 0.0, 1.0)
        fcut = (1 - x ** 2) ** 3
        pair = jnp.where(m, 0.5 * A * jnp.exp(-d / rho) * fcut, 0.0)
        G = cells.shape[0]
        node_e = params["per_type_energy_scale_shift"]["shifts"][graph["types"]] * graph["node_mask"]
        return (jax.ops.segment_sum(pair, graph["node_graph"][r], num_segments=G)
                + jax.ops.segment_sum(node_e, graph["node_graph"], num_segments=G))

    def export(self, tparams, out_dir, metadata):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        p = jax.tree_util.tree_map(np.asarray, tparams["model"])
        shifts = p["per_type_energy_scale_shift"]["shifts"] + np.asarray(tparams["offsets"])
        np.savez(out / "params.npz", shifts=shifts, logA=p["pair"]["logA"], logrho=p["pair"]["logrho"])
        (out / "meta.json").write_text(json.dumps(metadata, default=str))


def rattled_lif(n_frames, seed=0, reps=(2, 1, 1), amp=0.08, strain=0.02):
    """Rattled LiF rock-salt cells (conventional 8-atom cell × reps) with random strain."""
    from ase.build import bulk
    rng = np.random.default_rng(seed)
    base = bulk("LiF", "rocksalt", a=4.03, cubic=True).repeat(reps)
    out = []
    for _ in range(n_frames):
        at = base.copy()
        eps = rng.normal(scale=strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        at.set_cell(at.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        at.positions += rng.normal(scale=amp, size=at.positions.shape)
        out.append(at)
    return out


def label_with(model, tparams, images):
    """Attach E/F/stress from a TrainableModel (teacher) as SinglePointCalculator results."""
    from phonjax.train.data import frames_from_atoms, compute_capacities
    from phonjax.train.model_api import make_batch, predict
    dummy = []
    for at in images:
        a = at.copy()
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)), stress=np.zeros(6))
        dummy.append(a)
    ds = frames_from_atoms(dummy)
    caps = compute_capacities([model.frame_sizes(f) for f in ds.frames], 1)
    labelled = []
    fn = jax.jit(lambda p, b: predict(model, p, b))
    for at, f in zip(images, ds.frames):
        b = make_batch(model, [f], caps)
        pr = fn(tparams, b)
        n = len(at)
        a = at.copy()
        s = np.asarray(pr.stress[0])
        a.calc = SinglePointCalculator(a, energy=float(pr.energy[0]), forces=np.asarray(pr.forces[:n]),
                                       stress=np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]))
        labelled.append(a)
    return labelled


def write_extxyz(path, images, info=None):
    import ase.io
    imgs = []
    for at in images:
        a = at.copy()
        a.calc = at.calc
        if info:
            a.info.update(info)
        imgs.append(a)
    ase.io.write(path, imgs, format="extxyz")
    return Path(path)
