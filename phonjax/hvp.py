"""Hessian-vector products of a bound energy (the kernel of :mod:`phonjax.force_constants`).

    H·v = ∂/∂ε ∇E(x + ε v) |₀   (eV/Å² · Å per unit tangent; positions x (N, 3) Å, cell (3, 3) Å)

computed forward-over-reverse (``jax.jvp`` of ``jax.grad``, mode "jvp"; or ``jax.linearize`` of the gradient
once and the tangent map vmapped, mode "linearize"), vmapped over a batch of directions (n_dir, N, 3), or over
chunks of ``chunk_size`` directions with ``lax.map`` when memory is short; mode "hessian" forms the full
``jax.hessian`` (small cells). :func:`hvps` runs them as one call or as progress batches, on one device or with
the directions split over a 1-D :class:`jax.sharding.Mesh` (:func:`sharded_hvps`; energy, positions and cell
replicated). The energy is a pytree argument (:func:`phonjax.force_constants.bound_energy`), so structures of one
padded shape share one compiled kernel.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from phonjax.fc_record import ForceConstantsError
from phonjax.program_cache import cached_call
from phonjax.structure import Supercell
from phonjax.xla_options import kernel_jit

__all__ = ["hvp_map", "hvp_kernel", "hvp_edge_kernel", "active_edges", "supports_edge_mode", "resolve_hvp_mode",
           "EDGE_MODE_MAX_FRACTION", "hvp_kernel_batch", "hessian_kernel", "hvp_directions", "pad_directions",
           "hvps", "sharded_hvps", "resolve_mesh"]


def resolve_mesh(mesh="auto") -> Mesh | None:
    """The mesh one structure's products use: "auto" → every device when JAX sees several, else None (the
    default device, no sharding); None → None; a 1-D :class:`jax.sharding.Mesh` → itself."""
    if mesh is None:
        return None
    if isinstance(mesh, str) and mesh == "auto":
        if jax.device_count() < 2:
            return None
        return Mesh(np.array(jax.devices()), ("d",))
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise ForceConstantsError(f"mesh must be 'auto', None or a 1-D jax.sharding.Mesh, got {mesh!r}")
    return mesh


def gather(x) -> np.ndarray:
    """A (possibly multi-process) global array as numpy on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def hvp_map(energy, positions, cell, directions, mode: str, chunk_size: int | None, active=None):
    """(n_dir, N, 3) products of ``directions``. Mode "edge" needs ``active`` (:func:`active_edges`) and an
    energy that accepts ``edge_delta`` (``energy.func.edge_split``): each direction is carried into the edges
    it moves (those of the displaced atoms) as a separate small input, so the tangent never enters the
    network's other edges' geometry — the same product, with the geometric terms of A edges instead of all."""
    if mode == "edge":
        idx, mask, snd, rcv = active
        zero = jnp.zeros(idx.shape + (3,), positions.dtype)

        def grad_at(d):
            return jax.grad(lambda x: energy(x, cell, (idx, mask, d)))(positions)

        def one(v):
            return jax.jvp(grad_at, (zero,), (v[snd] - v[rcv],))[1]
    else:
        grad = jax.grad(lambda x: energy(x, cell))
        if mode == "linearize":
            _, one = jax.linearize(grad, positions)
        else:
            def one(v):
                return jax.jvp(grad, (positions,), (v,))[1]
    if chunk_size is None:
        return jax.vmap(one)(directions)
    nd = directions.shape[0]
    chunks = directions.reshape(nd // chunk_size, chunk_size, *directions.shape[1:])
    return jax.lax.map(jax.vmap(one), chunks).reshape(directions.shape)


@partial(kernel_jit, static_argnames=("mode", "chunk_size"))
def hvp_kernel(energy, positions, cell, directions, mode: str, chunk_size: int | None):
    """(n_dir, N, 3) Hessian-vector products H·v (eV/Å²·Å per unit v); modes "jvp", "linearize"."""
    return hvp_map(energy, positions, cell, directions, mode, chunk_size)


@partial(kernel_jit, static_argnames=("chunk_size",))
def hvp_edge_kernel(energy, positions, cell, directions, active, chunk_size: int | None):
    """:func:`hvp_kernel` in mode "edge" (``active``: :func:`active_edges` of the displaced atoms)."""
    return hvp_map(energy, positions, cell, directions, "edge", chunk_size, active)


def supports_edge_mode(energy) -> bool:
    """Whether a bound energy (a jax Partial) takes moved edges as a separate input (mode "edge")."""
    return bool(getattr(getattr(energy, "func", None), "edge_split", False)) and getattr(energy, "graph",
                                                                                          None) is not None


#: "auto" takes mode "edge" when the displaced atoms' edges are at most this fraction of all edges: above it the
#: products' geometric terms over those edges save little, and the "edge" kernel compiles longer (README, *Speed of
#: the HVP engine*)
EDGE_MODE_MAX_FRACTION = 0.125


def resolve_hvp_mode(mode: str, energy, atoms) -> tuple[str, tuple | None]:
    """(mode, active edges or None) for products that displace ``atoms`` — the one home of the choice: "auto" →
    "edge" for an energy that takes moved edges as a separate input (a phonjax NequIP model's) when their edges
    are at most :data:`EDGE_MODE_MAX_FRACTION` of all, else "jvp"; "edge" for any other energy is refused."""
    if mode not in ("auto", "edge"):
        return mode, None
    if not supports_edge_mode(energy):
        if mode == "edge":
            raise ForceConstantsError("mode 'edge' needs a phonjax NequIP model (its energy takes the displaced "
                                      "atoms' edges as a separate input); use mode='jvp' for this energy")
        return "jvp", None
    active = active_edges(energy.graph, atoms)
    n_real = int(np.sum(np.asarray(energy.graph.edge_mask)))
    if mode == "auto" and int(np.sum(np.asarray(active[1]))) > EDGE_MODE_MAX_FRACTION * n_real:
        return "jvp", None
    return "edge", active


def active_edges(graph, atoms) -> tuple:
    """(idx, mask, senders[idx], receivers[idx]) of the real edges with an end on one of ``atoms`` (the
    displaced atoms of the directions), padded by :func:`phonjax.buckets.capacity_bucket` (padding: edge 0,
    masked), as int32/bool device arrays."""
    from phonjax.buckets import capacity_bucket

    snd, rcv = np.asarray(graph.senders), np.asarray(graph.receivers)
    on = np.isin(snd, atoms) | np.isin(rcv, atoms)
    idx = np.flatnonzero(on & np.asarray(graph.edge_mask))
    n = capacity_bucket(len(idx))
    mask = np.zeros(n, bool)
    mask[:len(idx)] = True
    idx = np.concatenate([idx, np.zeros(n - len(idx), idx.dtype)]).astype(np.int32)
    return (jnp.asarray(idx), jnp.asarray(mask), jnp.asarray(snd[idx].astype(np.int32)),
            jnp.asarray(rcv[idx].astype(np.int32)))


@partial(kernel_jit, static_argnames=("mode", "chunk_size"))
def hvp_kernel_batch(energy, positions, cell, directions, mode: str, chunk_size: int | None):
    return jax.vmap(lambda e, p, c: hvp_map(e, p, c, directions, mode, chunk_size))(energy, positions, cell)


@kernel_jit
def hessian_kernel(energy, positions, cell):
    return jax.hessian(lambda x: energy(x, cell))(positions)


def hvp_directions(supercell: Supercell, plan=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent vectors (n_dir, n_super, 3) for the home-cell rows: unit displacements of home atom i along
    x, y, z (plan None), or the directions of a :class:`phonjax.symmetry.RowPlan`. Returns (V, atoms, dirs)."""
    n, ns = supercell.primitive.n_atoms, supercell.crystal.n_atoms
    if plan is None:
        atoms, dirs = np.repeat(np.arange(n), 3), np.tile(np.eye(3), (n, 1))
    else:
        atoms, dirs = np.asarray(plan.atoms), np.asarray(plan.directions, dtype=np.float64)
    V = np.zeros((len(atoms), ns, 3))
    V[np.arange(len(atoms)), atoms] = dirs
    return V, atoms, dirs


def pad_directions(V: np.ndarray, chunk_size: int | None) -> tuple[np.ndarray, int | None]:
    if chunk_size is None or chunk_size == "auto":  # "auto" without a planner (batches): all at once
        return V, None
    if int(chunk_size) < 1:
        raise ForceConstantsError(f"chunk_size must be a positive integer, got {chunk_size}")
    c = min(int(chunk_size), len(V))
    pad = (-len(V)) % c
    return np.concatenate([V, np.zeros((pad,) + V.shape[1:])]), c


def hvps(energy, pos, cell, V: np.ndarray, mode: str, chunk_size: int | None, progress,
         mesh=None, active=None) -> np.ndarray:
    """(n_dir, n_super, 3) products H·V, on the default device or with the directions split over ``mesh``'s
    devices (:func:`sharded_hvps`; ``chunk_size`` is then per device). Without ``progress``: one kernel call
    (``chunk_size``: lax.map inside it). With ``progress(done, total)``: batches of ``chunk_size`` directions
    per device (all at once when None) as a host loop of equal-shape calls (the last batch zero-padded), one
    compilation, a callback after each. The directions of a batch are vmapped and share one forward pass, so
    batches are never made smaller than the memory allows just to report progress (see
    :mod:`phonjax.progress`'s heartbeat)."""
    Vp, c = pad_directions(V, chunk_size)  # validates chunk_size

    def run(block, chunk):
        if mesh is None:
            if mode == "edge":
                return np.asarray(cached_call("hvp_edge_kernel", hvp_edge_kernel, energy, pos, cell,
                                              jnp.asarray(block), active, chunk_size=chunk))
            return np.asarray(cached_call("hvp_kernel", hvp_kernel, energy, pos, cell, jnp.asarray(block),
                                          mode=mode, chunk_size=chunk))
        return sharded_hvps(energy, pos, cell, block, mode, chunk, mesh, active)

    if progress is None:
        return run(Vp if mesh is None else V, c)[:len(V)]
    ndev = 1 if mesh is None else int(mesh.devices.size)
    step = len(V) if c is None else min(len(V), c * ndev)
    step = -(-step // ndev) * ndev  # equal batches, each a multiple of the device count: one compilation
    batches = np.concatenate([V, np.zeros((-len(V) % step,) + V.shape[1:])])
    progress(0, len(V))
    out = []
    for k in range(0, len(batches), step):
        out.append(run(batches[k:k + step], None))
        progress(min(k + step, len(V)), len(V))
    return np.concatenate(out)[:len(V)]


_KERNELS: dict = {}


def _hvp_kernel(mesh: Mesh, axis: str, mode: str, chunk: int | None):
    key = (mesh, axis, mode, chunk)
    if key not in _KERNELS:
        def local(energy, pos, cell, directions, active):
            return hvp_map(energy, pos, cell, directions, mode, chunk, active)

        _KERNELS[key] = kernel_jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(), P(axis), P()),
                                                 out_specs=P(axis), check_vma=False))
    return _KERNELS[key]


def sharded_hvps(energy, positions, cell, directions, mode: str, chunk_size: int | None, mesh: Mesh,
                 active=None) -> np.ndarray:
    """(n_dir, N, 3) Hessian-vector products of one structure with the directions (n_dir, N, 3) split over
    ``mesh``'s devices: the energy (a pytree, see :func:`phonjax.force_constants.bound_energy`), positions and
    cell are replicated, each device runs :func:`hvp_map` on its own block of directions (``chunk_size`` per
    ``lax.map`` step on each device; None: its whole block vmapped). The directions are zero-padded to a
    multiple of n_devices × chunk_size (zero tangents give zero products). Equal to the single-device kernel to
    rounding."""
    axis = mesh.axis_names[0]
    ndev = int(mesh.devices.size)
    V = np.asarray(directions)
    nd = len(V)
    per = -(-nd // ndev)
    if chunk_size is not None:
        per = -(-per // int(chunk_size)) * int(chunk_size)
    Vp = np.zeros((per * ndev,) + V.shape[1:], V.dtype)
    Vp[:nd] = V
    shard = NamedSharding(mesh, P(axis))
    d = jax.make_array_from_callback(Vp.shape, shard, lambda idx: Vp[idx])
    out = _hvp_kernel(mesh, axis, mode, chunk_size)(energy, jnp.asarray(positions), jnp.asarray(cell), d, active)
    return gather(out)[:nd]
