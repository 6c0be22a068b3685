"""q-point meshes for Brillouin-zone sums (thermal properties): the Γ-centred grid, its reduction by time
reversal, and by the crystal's point group.

A mesh (n1, n2, n3) holds q = k / n (reduced coordinates of the reciprocal lattice, k integer), folded to
(−1/2, 1/2] as phonopy's unshifted Γ-centred grid. A reduced set lists one q per orbit with the orbit's size as
its weight (weights sum to n1·n2·n3), so a mesh average over the reduced set equals the average over the whole
mesh whenever the frequencies are constant on orbits:

* time reversal (q ≡ −q): exact for real force constants (D(−q) = D(q)*);
* the point group (q ≡ Rᵀq for every rotation R of the space group, x ↦ R x + t in reduced coordinates, found by
  spglib) with time reversal: exact for force constants and Born data with the crystal's symmetry — phonopy's
  ``run_mesh`` default (``is_mesh_symmetry``). Rotations that do not map the mesh onto itself (a mesh that breaks
  the symmetry) are not used.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["MESH_LENGTH", "default_mesh", "mesh_qpoints", "time_reversal_mesh", "irreducible_mesh"]

#: Default q-mesh density of :func:`default_mesh`: n_i = ⌈MESH_LENGTH · |b_i|⌉ (Å; b_i without 2π).
MESH_LENGTH = 25.0


def _mesh(mesh) -> np.ndarray:
    m = np.asarray(tuple(int(x) for x in np.broadcast_to(np.asarray(mesh), (3,))), dtype=np.int64)
    if m.min() < 1:
        raise ValueError(f"mesh must be three positive integers, got {tuple(m)}")
    return m


def default_mesh(crystal, length: float = MESH_LENGTH) -> tuple[int, int, int]:
    """Γ-centred mesh with ⌈length·|b_i|⌉ points along reciprocal vector b_i (1/Å, no 2π) of ``crystal``."""
    rec = np.linalg.inv(np.asarray(crystal.cell, dtype=np.float64))       # columns: b_i (no 2π)
    return tuple(max(1, int(np.ceil(length * np.linalg.norm(rec[:, i]) - 1e-9))) for i in range(3))


def mesh_qpoints(mesh) -> np.ndarray:
    """Γ-centred mesh (n1·n2·n3, 3) in reduced coordinates, folded to (−1/2, 1/2] (phonopy's grid, unshifted)."""
    m = _mesh(mesh)
    axes = [(np.arange(n) + n // 2) % n - n // 2 for n in m]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return grid / m.astype(float)


def _index(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Linear index of integer grid points k (..., 3), taken modulo the mesh."""
    lo = int(k.min())
    v = np.arange(lo, int(k.max()) + 1)                  # every coordinate value: three small lookup tables
    strides = (int(m[1] * m[2]), int(m[2]), 1)
    kk = k - lo
    return sum(((v % int(m[i])) * strides[i])[kk[..., i]] for i in range(3))


def _reduce(mesh, images) -> tuple[np.ndarray, np.ndarray]:
    """(q, weights): one q per orbit of the mesh under ``images(k) -> (n_points, n_ops, 3)`` integer images."""
    m = _mesh(mesh)
    q = mesh_qpoints(m)
    k = np.round(q * m).astype(np.int64)
    canon = _index(images(k), m).min(axis=1)                                  # smallest index on each orbit
    reps, counts = np.unique(canon, return_counts=True)
    pos = np.empty(int(m.prod()), dtype=np.int64)
    pos[_index(k, m)] = np.arange(len(k))
    return q[pos[reps]], counts.astype(np.float64)


def time_reversal_mesh(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(q (nq', 3), weights (nq',)) of :func:`mesh_qpoints` with q and −q merged; weights sum to n1·n2·n3."""
    return _reduce(mesh, lambda k: np.stack([k, -k], axis=1))


def _point_group(crystal, symprec: float) -> np.ndarray:
    """(n_ops, 3, 3) integer rotations of ``crystal``'s space group in reduced coordinates (spglib)."""
    cell = np.asarray(crystal.cell, dtype=np.float64)
    frac = np.asarray(crystal.positions, dtype=np.float64) @ np.linalg.inv(cell)
    numbers = np.asarray(crystal.numbers)
    return _rotations(cell.tobytes(), frac.tobytes(), numbers.astype(np.int64).tobytes(), float(symprec)).copy()


@lru_cache(maxsize=16)
def _rotations(cell: bytes, frac: bytes, numbers: bytes, symprec: float) -> np.ndarray:
    import spglib

    cell_a = np.frombuffer(cell).reshape(3, 3)
    frac_a = np.frombuffer(frac).reshape(-1, 3)
    sym = spglib.get_symmetry((cell_a, frac_a, np.frombuffer(numbers, dtype=np.int64)), symprec=symprec)
    if sym is None:
        return np.eye(3, dtype=np.int64)[None]
    return np.unique(np.asarray(sym["rotations"], dtype=np.int64), axis=0)


def irreducible_mesh(mesh, crystal, symprec: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """(q (nq', 3), weights (nq',)) of :func:`mesh_qpoints` reduced by ``crystal``'s point group and time
    reversal (module docstring); weights sum to n1·n2·n3. ``crystal``: cell (3, 3) Å, positions (n, 3) Å,
    numbers (n,)."""
    m = _mesh(mesh)
    rots = _point_group(crystal, symprec)
    # Rᵀ on grid coordinates k = n·q is A = diag(n) Rᵀ diag(n)⁻¹; it maps the mesh onto itself iff A is integer
    ops = np.concatenate([rots, -rots]).transpose(0, 2, 1) * m[None, :, None] / m[None, None, :]
    ops = ops[np.all(np.abs(ops - np.rint(ops)) < 1e-9, axis=(1, 2))]
    ops = np.unique(np.rint(ops).astype(np.int64), axis=0)              # with time reversal, no repeats
    flat = ops.transpose(2, 0, 1).reshape(3, -1).astype(np.float64)     # [j, o·3 + i] = A_o[i, j]: one BLAS product

    def images(k):
        img = np.rint(k.astype(np.float64) @ flat).astype(np.int32 if m.prod() < 2**31 else np.int64)
        return img.reshape(len(k), -1, 3)

    return _reduce(m, images)
