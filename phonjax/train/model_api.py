"""What training needs from an energy model, and predictions (E, F, σ) on a padded batch.

The minimal interface (:class:`TrainableModel`) is implemented for phonjax NequIP models by
:mod:`phonjax.models.nequip.train_adapter`; tests may implement it with analytic potentials.

    type_names                       tuple of element symbols, index = model type
    initial_params()                 model parameter pytree to start from
    frame_sizes(frame)               host: (n_nodes, n_edges) of one structure
    build_graph(frames, caps)        host: padded batched graph of the frames (nodes in frame order,
                                     padding nodes/edges belong to the last graph, caps.n_graphs graphs)
    energies(params, graph, positions, cells) -> (n_graphs,) eV   jit-able, twice differentiable
    export(params, out_dir, metadata)  write a phonjax model directory

Training parameters are ``{"model": model_params, "offsets": (n_types,) eV}``: per-type energy
offsets aligning the model's energy zero with the DFT's (folded into the model's per-type shifts on
export). Stress follows ASE's sign convention: σ = (1/V) ∂E/∂ε for a symmetric strain ε applied to
positions and cell (r → r (1 + ε), cell rows → rows (1 + ε)).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import chemical_symbols

from phonjax.train.data import Capacities, DatasetError, Frame
from phonjax.train.loss import Labels, Predictions


class TrainableModel(Protocol):
    type_names: tuple[str, ...]

    def initial_params(self) -> Any: ...

    def frame_sizes(self, frame: Frame) -> tuple[int, int]: ...

    def build_graph(self, frames: Sequence[Frame], caps: Capacities) -> Any: ...

    def energies(self, params, graph, positions, cells) -> jnp.ndarray: ...

    def export(self, params, out_dir, metadata: dict) -> None: ...


class Batch(NamedTuple):
    """A padded batch. positions (N, 3) Å, cells (G, 3, 3) Å (identity for padding graphs),
    node_graph (N,) int, node_type (N,) int (model type index; 0 for padding), labels."""

    graph: Any
    positions: jnp.ndarray
    cells: jnp.ndarray
    node_graph: jnp.ndarray
    node_type: jnp.ndarray
    labels: Labels


def make_batch(model: TrainableModel, frames: Sequence[Frame], caps: Capacities, use_stress: bool = True) -> Batch:
    """Pad ``frames`` (≤ caps.n_graphs − 1 of them) to the static shape ``caps``."""
    n_real = sum(f.n_atoms for f in frames)
    if len(frames) > caps.n_graphs - 1 or n_real > caps.n_nodes - 1:
        raise DatasetError(f"batch of {len(frames)} frames / {n_real} atoms exceeds capacities {caps}")
    tidx = {s: i for i, s in enumerate(model.type_names)}
    N, G = caps.n_nodes, caps.n_graphs
    pos = np.zeros((N, 3))
    cells = np.tile(np.eye(3), (G, 1, 1))
    node_graph = np.full(N, G - 1, np.int32)
    node_type = np.zeros(N, np.int32)
    energy = np.zeros(G)
    forces = np.zeros((N, 3))
    stress = np.zeros((G, 3, 3))
    n_atoms = np.zeros(G)
    graph_mask = np.zeros(G, bool)
    node_mask = np.zeros(N, bool)
    stress_mask = np.zeros(G, bool)
    o = 0
    for g, f in enumerate(frames):
        n = f.n_atoms
        pos[o:o + n] = f.positions
        cells[g] = f.cell
        node_graph[o:o + n] = g
        try:
            node_type[o:o + n] = [tidx[chemical_symbols[z]] for z in f.numbers]
        except KeyError as e:
            raise DatasetError(f"{f.source}: species {e.args[0]} unknown to the model") from None
        energy[g], forces[o:o + n], n_atoms[g] = f.energy, f.forces, n
        graph_mask[g], node_mask[o:o + n] = True, True
        if use_stress and f.stress is not None:
            stress[g], stress_mask[g] = f.stress, True
        o += n
    graph = model.build_graph(frames, caps)
    lab = Labels(jnp.asarray(energy), jnp.asarray(forces), jnp.asarray(stress), jnp.asarray(n_atoms),
                 jnp.asarray(graph_mask), jnp.asarray(node_mask), jnp.asarray(stress_mask))
    return Batch(graph, jnp.asarray(pos), jnp.asarray(cells), jnp.asarray(node_graph),
                 jnp.asarray(node_type), lab)


def total_energies(model: TrainableModel, tparams, batch: Batch, positions, cells) -> jnp.ndarray:
    """(G,) model energies + Σ per-type offsets over real atoms."""
    e = model.energies(tparams["model"], batch.graph, positions, cells)
    off = tparams["offsets"][batch.node_type] * batch.labels.node_mask.astype(e.dtype)
    return e + jax.ops.segment_sum(off, batch.node_graph, num_segments=e.shape[0])


def predict(model: TrainableModel, tparams, batch: Batch, with_stress: bool = True) -> Predictions:
    """Energies (G,), forces −∂E/∂r (N, 3), stress (1/V) ∂E/∂ε (G, 3, 3) by one reverse pass."""
    G = batch.cells.shape[0]
    pos0 = batch.positions
    cells0 = batch.cells

    def etot(pos, strain):
        sym = 0.5 * (strain + jnp.swapaxes(strain, 1, 2))
        defo = jnp.eye(3, dtype=pos.dtype)[None] + sym
        pos_s = jnp.einsum("ni,nij->nj", pos, defo[batch.node_graph])
        cells_s = jnp.einsum("gki,gij->gkj", cells0, defo)
        e = total_energies(model, tparams, batch, pos_s, cells_s)
        return jnp.sum(e * batch.labels.graph_mask.astype(e.dtype)), e

    strain0 = jnp.zeros((G, 3, 3), dtype=pos0.dtype)
    if with_stress:
        (dpos, deps), e = jax.grad(etot, argnums=(0, 1), has_aux=True)(pos0, strain0)
        vol = jnp.abs(jnp.linalg.det(cells0))
        stress = deps / vol[:, None, None]
    else:
        dpos, e = jax.grad(etot, argnums=0, has_aux=True)(pos0, strain0)
        stress = jnp.zeros((G, 3, 3), dtype=pos0.dtype)
    return Predictions(e, -dpos, stress)
