"""Periodic neighbour graphs padded to static shapes.

Host side (numpy): :func:`neighbor_list` finds every pair (centre i, neighbour j, integer cell shift S)
with |r_j − r_i + S @ cell| < r_max (vesin, full list, no self pair at S = 0), and :func:`build_graph`
packs one or several structures into a :class:`Graph` whose array lengths are *bucketed* capacities
(:func:`bucket`), so that a few more or fewer edges do not change the shapes and do not recompile.

Device side (jit-safe): :func:`edge_vectors` computes edge vectors from positions and cells inside the
traced function, ``vec = pos[senders] − pos[receivers] + shifts @ cell[graph of edge]`` (Å), so that
energies are differentiable with respect to positions *and* cell (strain). Padded edges get a harmless
unit vector (no NaN in gradients or Hessians); all consumers must multiply by ``edge_mask``.

Conventions (nequip's): ``receivers`` = edge_index[0] = the centre atom (messages are summed onto it),
``senders`` = edge_index[1] = the neighbour.
"""
from __future__ import annotations

import sys
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from phonjax.buckets import capacity_bucket


class GraphError(ValueError):
    """A structure cannot be turned into a graph (atoms too close, bad cell, capacities too small)."""


#: Atoms closer than this (Å) are rejected: no interatomic potential is meaningful there.
MIN_DISTANCE = 0.3


class Graph(NamedTuple):
    """A padded batch of periodic graphs (a JAX pytree of arrays; every shape is static).

    senders (E,) int32: neighbour atom j of each edge.   receivers (E,) int32: centre atom i.
    shifts (E, 3) float64: integer cell shift S of the neighbour (vec = r_j − r_i + S @ cell).
    edge_mask (E,) bool: real edges.   species (N,) int32: model type index (0 for padding).
    node_mask (N,) bool: real atoms.   node_graph (N,) int32: structure index of each node.
    graph_mask (G,) bool: real structures (G = number of graphs incl. padding, static).
    Padding edges join padding nodes (or node 0 when there are none) with zero shift.
    """

    senders: jnp.ndarray
    receivers: jnp.ndarray
    shifts: jnp.ndarray
    edge_mask: jnp.ndarray
    species: jnp.ndarray
    node_mask: jnp.ndarray
    node_graph: jnp.ndarray
    graph_mask: jnp.ndarray

    @property
    def n_graphs(self) -> int:
        return int(self.graph_mask.shape[0])

    @property
    def n_node_capacity(self) -> int:
        return int(self.node_mask.shape[0])

    @property
    def n_edge_capacity(self) -> int:
        return int(self.edge_mask.shape[0])


#: graph capacities are padded by the one policy of :mod:`phonjax.buckets`.
bucket = capacity_bucket


#: modules vesin imports only to accept their array types (torch: seconds to import)
_VESIN_OPTIONAL = ("torch", "cupy")


def _vesin_neighbor_list():
    """vesin's NeighborList class. vesin imports torch and cupy eagerly, only to accept their tensors; phonjax
    passes numpy arrays, so when vesin is imported first it is imported with those two hidden (torch-tensor input
    to vesin is then off in this process; numpy input, which torch nequip's own neighbour lists use too, is
    unchanged). Where torch is loaded already nothing is hidden."""
    if "vesin" in sys.modules or "torch" in sys.modules:
        from vesin import NeighborList
        return NeighborList
    hidden = [m for m in _VESIN_OPTIONAL if m not in sys.modules]
    try:
        for m in hidden:
            sys.modules[m] = None  # `import m` raises ImportError while this is set
        from vesin import NeighborList
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return NeighborList


def neighbor_list(positions, cell, r_max: float, pbc=True):
    """Full neighbour list within ``r_max`` (Å).

    positions (n, 3) Å, cell (3, 3) Å (rows = lattice vectors). Returns (receivers i, senders j,
    shifts S) with r_j − r_i + S @ cell shorter than r_max; pairs (i, i, 0) are excluded.
    Raises GraphError when two atoms are closer than MIN_DISTANCE (0.3 Å).
    """
    NeighborList = _vesin_neighbor_list()
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(positions)) or not np.all(np.isfinite(cell)):
        raise GraphError("positions or cell contain NaN/inf")
    if not r_max > 0:
        raise GraphError(f"r_max must be positive, got {r_max}")
    periodic = bool(pbc) if np.ndim(pbc) == 0 else bool(np.all(pbc))
    if periodic and abs(np.linalg.det(cell)) < 1e-8:
        raise GraphError("cell is singular (volume ~ 0)")
    nl = NeighborList(cutoff=float(r_max), full_list=True)
    i, j, S, d = nl.compute(positions, cell, periodic, quantities="ijSd")
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    S = np.asarray(S, np.int64).reshape(-1, 3)
    d = np.asarray(d, np.float64)
    if d.size and d.min() < MIN_DISTANCE:
        k = int(np.argmin(d))
        raise GraphError(f"atoms {i[k]} and {j[k]} are {d[k]:.4f} Å apart (< {MIN_DISTANCE} Å)")
    # vesin excludes i == j with zero shift already; keep the guard explicit
    keep = ~((i == j) & np.all(S == 0, axis=1))
    return i[keep], j[keep], S[keep]


def build_graph(structures: Sequence, species: Sequence, r_max: float, *, n_graphs: int | None = None,
                n_nodes: int | None = None, n_edges: int | None = None) -> Graph:
    """Pack structures into one padded :class:`Graph`.

    structures: sequence of (positions (n, 3) Å, cell (3, 3) Å) pairs (or objects with ``.positions`` and
      ``.cell``, e.g. Crystal or ase.Atoms).  species: matching sequence of (n,) model type indices.
    n_graphs / n_nodes / n_edges: capacities (default: len(structures), bucket(total atoms),
      bucket(total edges)); too-small capacities raise GraphError. With one structure and default
      capacities, n_graphs = 1 and padding nodes/edges belong to graph 0 (masked).
    Node order: the atoms of structure 0, then structure 1, …, then padding.
    """
    if len(structures) != len(species):
        raise GraphError(f"{len(structures)} structures but {len(species)} species arrays")
    if len(structures) == 0:
        raise GraphError("no structures to build a graph from")
    recv, send, shf, spc, ngr = [], [], [], [], []
    offset = 0
    for g, (s, z) in enumerate(zip(structures, species)):
        pos, cell = _pos_cell(s)
        z = np.asarray(z, np.int64).reshape(-1)
        if z.shape[0] != pos.shape[0]:
            raise GraphError(f"structure {g}: {z.shape[0]} species for {pos.shape[0]} atoms")
        i, j, S = neighbor_list(pos, cell, r_max)
        recv.append(i + offset)
        send.append(j + offset)
        shf.append(S)
        spc.append(z)
        ngr.append(np.full(pos.shape[0], g))
        offset += pos.shape[0]
    n_real_nodes, n_real_graphs = offset, len(structures)
    recv = np.concatenate(recv)
    send = np.concatenate(send)
    shf = np.concatenate(shf).reshape(-1, 3)
    n_real_edges = recv.shape[0]

    G = n_real_graphs if n_graphs is None else int(n_graphs)
    N = bucket(n_real_nodes) if n_nodes is None else int(n_nodes)
    E = bucket(n_real_edges) if n_edges is None else int(n_edges)
    if G < n_real_graphs or N < n_real_nodes or E < n_real_edges:
        raise GraphError(f"capacities (graphs {G}, nodes {N}, edges {E}) too small for "
                         f"({n_real_graphs}, {n_real_nodes}, {n_real_edges})")
    pad_node = n_real_nodes if N > n_real_nodes else 0
    senders = np.full(E, pad_node, np.int32)
    receivers = np.full(E, pad_node, np.int32)
    shifts = np.zeros((E, 3))
    edge_mask = np.zeros(E, bool)
    senders[:n_real_edges], receivers[:n_real_edges] = send, recv
    shifts[:n_real_edges] = shf
    edge_mask[:n_real_edges] = True
    species_arr = np.zeros(N, np.int32)
    species_arr[:n_real_nodes] = np.concatenate(spc)
    node_mask = np.zeros(N, bool)
    node_mask[:n_real_nodes] = True
    node_graph = np.full(N, G - 1, np.int32)
    node_graph[:n_real_nodes] = np.concatenate(ngr)
    graph_mask = np.zeros(G, bool)
    graph_mask[:n_real_graphs] = True
    return Graph(jnp.asarray(senders), jnp.asarray(receivers), jnp.asarray(shifts), jnp.asarray(edge_mask),
                 jnp.asarray(species_arr), jnp.asarray(node_mask), jnp.asarray(node_graph),
                 jnp.asarray(graph_mask))


def graph_sizes(positions, cell, r_max: float) -> tuple[int, int]:
    """(n_nodes, n_edges) of one structure, for choosing batch capacities."""
    i, _, _ = neighbor_list(positions, cell, r_max)
    return int(np.asarray(positions).reshape(-1, 3).shape[0]), int(i.shape[0])


def pad_positions(positions, n_nodes: int) -> np.ndarray:
    """(n, 3) → (n_nodes, 3) with zero rows for padding nodes."""
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    out = np.zeros((n_nodes, 3))
    out[: positions.shape[0]] = positions
    return out


def edge_vectors(graph: Graph, positions, cells):
    """Edge vectors (E, 3) Å and a safe version for norms (padded edges → (1, 0, 0)).

    positions (N, 3) Å (padded to the node capacity); cells (3, 3) for a single structure or
    (G, 3, 3) per graph. Returns (vec, vec_safe): vec is exactly r_j − r_i + S @ cell (zero on padded
    edges); vec_safe replaces padded edges by a unit vector so that norms, normalised directions and
    their derivatives stay finite. Differentiable w.r.t. positions and cells.
    """
    cells = jnp.asarray(cells)
    if cells.ndim == 2:
        shift_vec = graph.shifts.astype(cells.dtype) @ cells
    else:
        edge_cell = cells[graph.node_graph[graph.receivers]]
        shift_vec = jnp.einsum("ei,eij->ej", graph.shifts.astype(cells.dtype), edge_cell)
    vec = positions[graph.senders] - positions[graph.receivers] + shift_vec
    mask = graph.edge_mask[:, None]
    vec = jnp.where(mask, vec, 0.0)
    unit = jnp.array([1.0, 0.0, 0.0], dtype=vec.dtype)
    vec_safe = jnp.where(mask, vec, unit)
    return vec, vec_safe


def _pos_cell(s):
    if isinstance(s, tuple) and len(s) == 2:
        pos, cell = s
    else:
        pos, cell = s.positions, s.cell
        cell = getattr(cell, "array", cell)
    return np.asarray(pos, np.float64).reshape(-1, 3), np.asarray(cell, np.float64).reshape(3, 3)
