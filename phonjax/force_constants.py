"""Force constants by automatic differentiation (seed Eq. 1), then symmetrisation (Eq. 2) and real-space ASR
(:mod:`phonjax.fc_symmetrize`); the result is a :class:`~phonjax.fc_record.ForceConstants` record.

Only the 3·n_prim rows of the home-cell atoms are computed:

    fc[i, j, a, b] = ∂²E / ∂u_ia ∂u_jb   (eV/Å², shape (n_prim, n_super, 3, 3); home atom i = supercell atom i)

Each row block is a Hessian-vector product H·v with v the unit displacement of home atom i along a
(:mod:`phonjax.hvp`: forward-over-reverse, vmapped over the directions or chunked by the memory plan of
:mod:`phonjax.memory`, split over the devices when JAX sees several). Mode "hessian" forms the full
``jax.hessian`` (small cells).
With ``symmetry=True`` only the site-symmetry-reduced products of :mod:`phonjax.symmetry` are computed.

Energy interfaces: an object with ``bind(crystal) -> energy(positions, cell)`` (the NequIP model) or a plain
callable ``energy_fn(positions, cell, numbers)``. The jitted kernels take the energy as a *pytree argument*:
when ``bind`` returns a :class:`jax.tree_util.Partial` (arrays as leaves), and for plain callables, a second
structure of the same shape reuses the compiled kernel (no recompilation).

The result's ``provenance`` is "short-range-model" for a model trained on dipole-subtracted labels
(``metadata["long_range"]``), else "model" (see :mod:`phonjax.longrange.policy`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.fc_record import FcReport, ForceConstants, ForceConstantsError
from phonjax.hvp import (hvp_directions, hvp_kernel, hvp_kernel_batch, hvp_map, hessian_kernel, hvps,
                         pad_directions, resolve_hvp_mode, resolve_mesh)
from phonjax.fc_symmetrize import (ASR_MODES, apply_asr, asr_violation, finalize_fc, permutation_partner,
                                   permutation_violation, symmetrize_fc)
from phonjax.structure import Crystal, Supercell, make_supercell, supercell_matrix

__all__ = ["ForceConstants", "FcReport", "ForceConstantsError", "force_constants", "force_constants_batch",
           "hvp_directions", "symmetrize_fc", "apply_asr", "asr_violation", "permutation_violation",
           "permutation_partner", "finalize_fc", "ASR_MODES", "model_provenance", "bound_energy", "hvp_map",
           "pad_directions", "as_supercell", "per_structure", "results_from_hvps", "hvp_kernel"]

MODES = ("auto", "jvp", "linearize", "edge", "hessian")


def model_provenance(model_or_energy_fn) -> str:
    """"short-range-model" for a model whose metadata records dipole-subtracted training, else "model"."""
    from phonjax.longrange.dipole_labels import is_short_range
    return "short-range-model" if is_short_range(getattr(model_or_energy_fn, "metadata", None)) else "model"


# --------------------------------------------------------------------------------------------------------
# energy adapters and kernels
@dataclass(frozen=True)
class _PlainAdapter:
    """energy(positions, cell) from energy_fn(positions, cell, numbers); hashable by the wrapped function so
    the jit cache is shared between calls with the same energy_fn."""

    fn: Callable

    def __call__(self, numbers, positions, cell):
        return self.fn(positions, cell, numbers)


@dataclass(frozen=True)
class _ModelAdapter:
    """energy(params, graph, positions, cell) of a phonjax NequIP Model with a given (static, hashable) config:
    params and graph become pytree leaves of a Partial, so the compiled kernels are shared by every structure
    of the same padded shape (a closure over params would be re-traced, and its weights constant-folded,
    for every bind)."""

    config: object

    def __call__(self, params, graph, positions, cell):
        from phonjax.models.nequip.model import _energy_single
        return _energy_single(self.config, params, graph, jnp.asarray(positions), jnp.asarray(cell))


def _model_partial(model, e):
    """Partial over a phonjax Model's bound energy (see :class:`_ModelAdapter`), or None when ``model`` is not
    one (other objects with ``bind`` keep their own function)."""
    graph = getattr(e, "graph", None)
    if graph is None or not hasattr(model, "config") or not hasattr(model, "params"):
        return None
    try:
        import phonjax.models.nequip.model as pm
        if not isinstance(model, pm.Model) or not hasattr(pm, "_energy_single"):
            return None
        hash(model.config)
    except Exception:
        return None
    return jax.tree_util.Partial(_ModelAdapter(model.config), model.params, graph)


def bound_energy(model_or_energy_fn, crystal: Crystal, edge_chunk: int | None = None):
    """A jax Partial ``energy(positions, cell)`` for ``crystal`` (``edge_chunk`` is passed to Model.bind)."""
    if hasattr(model_or_energy_fn, "bind"):
        e = (model_or_energy_fn.bind(crystal) if edge_chunk is None
             else model_or_energy_fn.bind(crystal, edge_chunk=edge_chunk))
        if isinstance(e, jax.tree_util.Partial):
            return e
        if not callable(e):
            raise ForceConstantsError(f"{type(model_or_energy_fn).__name__}.bind() did not return a callable")
        p = _model_partial(model_or_energy_fn, e)  # older phonjax Models whose bind returned a closure
        if p is not None:
            return p
        return jax.tree_util.Partial(e)  # closures: recompiled per bind (cannot be shared)
    if callable(model_or_energy_fn):
        return jax.tree_util.Partial(_PlainAdapter(model_or_energy_fn), jnp.asarray(crystal.numbers))
    raise ForceConstantsError(f"expected a model with bind(crystal) or an energy function, got "
                              f"{type(model_or_energy_fn).__name__}")


def _rows_from_hvps(h: np.ndarray, supercell: Supercell, plan) -> np.ndarray:
    """fc (n, ns, 3, 3) from products h (n_dir, ns, 3) (fc[i, s, a, b] = (H e_ia)[s, b] by H's symmetry)."""
    n, ns = supercell.primitive.n_atoms, supercell.crystal.n_atoms
    if plan is None:
        return h.reshape(n, 3, ns, 3).transpose(0, 2, 1, 3)
    from phonjax.symmetry import rebuild_rows
    return rebuild_rows(plan, h)


def _check_mode(mode):
    if mode not in MODES:
        raise ForceConstantsError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def as_supercell(atoms, supercell) -> Supercell:
    if isinstance(supercell, Supercell):
        return supercell
    if supercell is None:
        raise ForceConstantsError("a supercell (N, (N1, N2, N3) or a 3x3 matrix) is required")
    return make_supercell(Crystal.coerce(atoms), supercell_matrix(supercell))


def supercell_width(crystal: Crystal) -> float:
    """Smallest distance (Å) between opposite faces of the cell: twice the radius of its inscribed sphere."""
    return float(1.0 / np.linalg.norm(np.linalg.inv(crystal.cell), axis=0).max())


def check_supercell_range(sc: Supercell, r_max: float) -> None:
    """Raise when the supercell does not contain the model's cutoff sphere (width < 2·r_max): an atom would
    then see periodic images of its own displacement, and the force constants alias between images."""
    w = supercell_width(sc.crystal)
    if w < 2.0 * r_max - 1e-9:
        prim_w = supercell_width(sc.primitive)
        n = int(np.ceil(2.0 * r_max / prim_w - 1e-9))
        raise ForceConstantsError(
            f"supercell too small for the model: its width {w:.2f} Å is less than the cutoff sphere's diameter "
            f"2·r_max = {2 * r_max:.2f} Å (use at least {n}x{n}x{n}, or allow_small_supercell=True)")


def _node_capacity(energy, n_atoms: int) -> int:
    """Padded atom count of a bound model energy (its graph's bucketed node capacity), else ``n_atoms``:
    positions and directions padded to it give every supercell of the same bucket one compiled kernel."""
    graph = getattr(energy, "graph", None)
    cap = getattr(graph, "n_node_capacity", None)
    return int(cap) if cap is not None and int(cap) >= n_atoms else n_atoms


def _pad_atoms(x, cap: int) -> np.ndarray:
    """(n, 3) → (cap, 3) with zero rows (padding atoms carry no energy, so their derivatives vanish)."""
    x = np.asarray(x, np.float64)
    return x if x.shape[0] == cap else np.concatenate([x, np.zeros((cap - x.shape[0], 3))])


def _plan_memory(model, crystal, n_dir: int, edge_chunk, chunk_size, memory_budget, n_devices: int = 1):
    """(energy, chunk_size, MemoryPlan or None): for a phonjax Model with ``chunk_size="auto"`` the directions
    per step and the edge chunk are chosen from the memory available (:mod:`phonjax.memory`); other energies
    run all directions at once; with ``n_devices`` > 1 the plan is per device."""
    energy = bound_energy(model, crystal, edge_chunk)
    if chunk_size != "auto":
        return energy, chunk_size, None
    graph, bound = getattr(energy, "graph", None), getattr(energy.func, "edge_chunk", None)
    if graph is None or bound is None or not hasattr(model, "config") or not hasattr(model, "n_params"):
        return energy, None, None
    from phonjax.memory import plan_hvp_memory
    plan = plan_hvp_memory(model.config, model.n_params(), graph.n_node_capacity, graph.n_edge_capacity, n_dir,
                           edge_chunk=edge_chunk, chunk_size="auto", memory_budget=memory_budget,
                           n_devices=n_devices)
    if plan.edge_chunk != bound:
        energy = bound_energy(model, crystal, plan.edge_chunk)
    return energy, plan.chunk_size, plan


def force_constants(model_or_energy_fn, atoms, supercell, *, mode: str = "auto", chunk_size="auto",
                    symmetry: bool = True, symmetrize: bool = True, asr: str | None = "phonopy", born=None,
                    symprec: float = 1e-5, allow_small_supercell: bool = False,
                    edge_chunk: int | None = None, memory_budget=None,
                    progress: Callable[[int, int], None] | None = None, mesh="auto") -> ForceConstants:
    """Home-cell force constants of ``supercell`` of ``atoms`` by automatic differentiation.

    model_or_energy_fn: object with ``bind(crystal) -> energy(positions, cell)`` or ``energy_fn(positions, cell,
    numbers)`` (eV).  atoms: primitive cell (Crystal / ase.Atoms).  supercell: N, (N1, N2, N3), a 3×3 integer
    matrix M (supercell cell = M @ cell) or a :class:`Supercell`.  mode: "auto" | "jvp" | "linearize" | "edge" |
    "hessian" ("auto": :func:`phonjax.hvp.resolve_hvp_mode` — "edge" for a phonjax NequIP model whose displaced
    atoms' edges are a small share of all, else "jvp").
    chunk_size: directions per ``lax.map`` step (None: all vmapped at once; "auto": as many as the memory
    allows, see :mod:`phonjax.memory`, which also picks ``edge_chunk`` when that is None).  memory_budget: bytes
    (or "12G") the automatic choice may plan with (None: ``$PHONJAX_MEMORY_BUDGET`` or the free host/device
    memory).  symmetry: compute only site-symmetry-reduced products (spglib) and rebuild the other rows.
    symmetrize: Eq. 2.  asr: "phonopy", "simple" or None.  born: optional Born data attached to the result.
    allow_small_supercell: skip the check that a model with ``r_max`` fits its cutoff sphere in the supercell.
    edge_chunk: a phonjax Model's edges per rematerialised message chunk (0: none; None: automatic by graph
    size) — O(nodes) instead of O(edges) memory in large supercells.  progress: ``progress(done, total)`` called
    as batches of Hessian-vector products finish (see :func:`phonjax.hvp.hvps`).  mesh: "auto" splits the
    Hessian-vector products over every device JAX sees when there are several (one device: no sharding), None
    keeps them on the default device, a 1-D :class:`jax.sharding.Mesh` uses its devices
    (:func:`phonjax.hvp.sharded_hvps`; the memory plan is then per device). Not used by mode "hessian".
    """
    _check_mode(mode)
    sc = as_supercell(atoms, supercell)
    r_max = getattr(model_or_energy_fn, "r_max", None)
    if r_max is not None and not allow_small_supercell:
        check_supercell_range(sc, float(r_max))
    t0 = time.perf_counter()
    n, ns = sc.primitive.n_atoms, sc.crystal.n_atoms
    cell = jnp.asarray(sc.crystal.cell)
    mem = None
    if mode == "hessian":
        energy = bound_energy(model_or_energy_fn, sc.crystal, edge_chunk)
        cap = _node_capacity(energy, ns)
        pos = jnp.asarray(_pad_atoms(sc.crystal.positions, cap))
        H = np.asarray(hessian_kernel(energy, pos, cell))[:, :, :ns]  # (cap, 3, ns, 3)
        raw = H[:n].transpose(0, 2, 1, 3)
        n_hvp = 3 * ns
    else:
        plan = None
        if symmetry:
            from phonjax.symmetry import plan_rows
            plan = plan_rows(sc, symprec=symprec)
        V, atoms_moved, _ = hvp_directions(sc, plan)
        mesh = resolve_mesh(mesh)
        energy, chunk_size, mem = _plan_memory(model_or_energy_fn, sc.crystal, len(V), edge_chunk, chunk_size,
                                               memory_budget, 1 if mesh is None else int(mesh.devices.size))
        mode, active = resolve_hvp_mode(mode, energy, np.unique(atoms_moved))
        cap = _node_capacity(energy, ns)
        pos = jnp.asarray(_pad_atoms(sc.crystal.positions, cap))
        Vc = np.stack([_pad_atoms(v, cap) for v in V]) if cap > ns else V
        h = hvps(energy, pos, cell, Vc, mode, chunk_size, progress, mesh, active)[:, :ns]
        raw = _rows_from_hvps(h, sc, plan)
        n_hvp = len(V)
    fc, rep = finalize_fc(raw, sc, symmetrize=symmetrize, asr=asr, mode=mode, n_hvp=n_hvp,
                          wall_time_s=time.perf_counter() - t0)
    if mem is not None:
        rep = replace(rep, chunk_size=mem.chunk_size, edge_chunk=mem.edge_chunk)
    if mode != "hessian" and mesh is not None:
        rep = replace(rep, n_devices=int(mesh.devices.size))
    return ForceConstants(sc, fc, born, rep, provenance=model_provenance(model_or_energy_fn))


def _stackable(energies) -> bool:
    defs = [jax.tree_util.tree_structure(e) for e in energies]
    if any(d != defs[0] for d in defs):
        return False
    shapes = [[(np.shape(x), np.asarray(x).dtype) for x in jax.tree_util.tree_leaves(e)] for e in energies]
    return all(s == shapes[0] for s in shapes)


def force_constants_batch(model_or_energy_fn, structures: Sequence, supercell, *, mode: str = "auto",
                          chunk_size: int | None = None, symmetrize: bool = True, asr: str | None = "phonopy",
                          vmap: bool = True) -> list[ForceConstants]:
    """Force constants of many structures. ``supercell``: one spec for all, or a list (one per structure, e.g.
    several supercell sizes). Structures whose supercells have the same shape (atoms, energy pytree leaves)
    are evaluated in one vmapped kernel call; others one by one (compiled kernels are reused when shapes
    repeat). mode "auto" is "jvp" here ("edge" takes one structure's edges; use :func:`force_constants`).
    Returns a list in input order."""
    _check_mode(mode)
    if mode == "edge":
        raise ForceConstantsError("mode 'edge' is for one structure at a time (force_constants); batches use "
                                  "'auto' (= 'jvp') or 'linearize'")
    mode = "jvp" if mode == "auto" else mode
    if mode == "hessian":
        return [force_constants(model_or_energy_fn, s, sc, mode=mode, symmetrize=symmetrize, asr=asr)
                for s, sc in zip(structures, per_structure(supercell, len(structures)))]
    scs = [as_supercell(s, m) for s, m in zip(structures, per_structure(supercell, len(structures)))]
    energies = [bound_energy(model_or_energy_fn, sc.crystal) for sc in scs]
    groups: dict = {}
    for k, (sc, e) in enumerate(zip(scs, energies)):
        key = (sc.primitive.n_atoms, sc.crystal.n_atoms, jax.tree_util.tree_structure(e),
               tuple(np.shape(x) for x in jax.tree_util.tree_leaves(e)))
        groups.setdefault(key, []).append(k)
    out: list = [None] * len(scs)
    for idx in groups.values():
        t0 = time.perf_counter()
        V, _, _ = hvp_directions(scs[idx[0]])
        Vp, c = pad_directions(V, chunk_size)
        es = [energies[k] for k in idx]
        if vmap and len(idx) > 1 and _stackable(es):
            stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *es)
            pos = jnp.stack([jnp.asarray(scs[k].crystal.positions) for k in idx])
            cell = jnp.stack([jnp.asarray(scs[k].crystal.cell) for k in idx])
            hs = np.asarray(hvp_kernel_batch(stacked, pos, cell, jnp.asarray(Vp), mode, c))[:, :len(V)]
        else:
            hs = [np.asarray(hvp_kernel(energies[k], jnp.asarray(scs[k].crystal.positions),
                                         jnp.asarray(scs[k].crystal.cell), jnp.asarray(Vp), mode, c))[:len(V)]
                  for k in idx]
        dt = (time.perf_counter() - t0) / len(idx)
        for k, fc in results_from_hvps(hs, idx, scs, symmetrize=symmetrize, asr=asr, mode=mode,
                                       wall_time_s=dt, provenance=model_provenance(model_or_energy_fn)).items():
            out[k] = fc
    return out


def results_from_hvps(hvps, members, supercells, *, symmetrize: bool, asr, mode: str,
                      wall_time_s: float, provenance: str = "model") -> dict:
    """{k: ForceConstants} from all-row Hessian-vector products hvps[m] (3·n_prim, n_super, 3) of structure
    members[m] (shared by the batched and the sharded paths)."""
    out = {}
    for k, h in zip(members, hvps):
        h = np.asarray(h)
        fc, rep = finalize_fc(_rows_from_hvps(h, supercells[k], None), supercells[k], symmetrize=symmetrize,
                              asr=asr, mode=mode, n_hvp=len(h), wall_time_s=wall_time_s)
        out[k] = ForceConstants(supercells[k], fc, None, rep, provenance=provenance)
    return out


def per_structure(supercell, n: int) -> list:
    if isinstance(supercell, (list, tuple)) and len(supercell) == n and n > 0 and (
            isinstance(supercell[0], Supercell) or np.ndim(supercell[0]) >= 1 or n != 3):
        return list(supercell)
    return [supercell] * n
