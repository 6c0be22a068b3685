"""Site-symmetry reduction of home-cell force-constant rows.

Only the rows of symmetry-independent atoms are computed, and for each only the fewest Cartesian
directions whose images under the atom's site-symmetry group span 3D (one direction for rock salt's
Oh sites: two Hessian-vector products instead of six). Every other row is rebuilt with the space-group
operations (rotation + atom permutation of the supercell, lattice translations included).

Conventions: a space-group operation (W, w) acts on primitive fractional coordinates as x' = W x + w;
its Cartesian rotation is R = Lᵀ W L⁻ᵀ (L: rows are lattice vectors). Under an operation that maps
supercell atom j to σ(j), force constants transform as fc[σ(i), σ(j)] = R fc[i, j] Rᵀ, and a
Hessian-vector product h_v[j] = Σ_a v_a fc[i, j, a, :] as h_{Rv}[σ(j)] = R h_v[j] when σ(i) = i.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import spglib

from phonjax.structure import Supercell

_CANDIDATES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1],
                        [1, 2, 3]], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class SiteOp:
    """A space-group operation restricted to the supercell: Cartesian rotation R (3, 3) and the
    permutation perm (n_super,) with atom j ↦ perm[j]."""

    rotation: np.ndarray
    perm: np.ndarray


@dataclass(frozen=True, eq=False)
class RowPlan:
    """Which Hessian-vector products to compute and how to rebuild all home-cell rows from them.

    atoms: (n_hvp,) home-cell atom of each HVP.  directions: (n_hvp, 3) Cartesian unit vectors.
    site_ops: per representative atom, its site-symmetry operations.  orbit_ops: per home-cell atom,
    (representative, SiteOp mapping the representative onto it).  n_ops: operations compatible with
    the supercell.
    """

    atoms: np.ndarray
    directions: np.ndarray
    site_ops: dict
    orbit_ops: tuple
    n_ops: int

    @property
    def n_hvp(self) -> int:
        return int(self.atoms.shape[0])


def identity_plan(n_prim: int) -> RowPlan:
    """All 3·n_prim rows, no symmetry (x, y, z for every home-cell atom)."""
    atoms = np.repeat(np.arange(n_prim), 3)
    dirs = np.tile(np.eye(3), (n_prim, 1))
    return RowPlan(atoms, dirs, {}, tuple((i, None) for i in range(n_prim)), 1)


def _supercell_ops(sc: Supercell, symprec: float):
    """Space-group operations of the primitive cell that map the supercell lattice onto itself, as
    (W (3,3) int, R_cart (3,3), p_img (n_prim,) primitive image atom, n_img (n_prim, 3) lattice shift)."""
    prim = sc.primitive
    frac = prim.scaled_positions
    sym = spglib.get_symmetry((prim.cell, frac, prim.numbers), symprec=symprec)
    if sym is None:
        return []
    M = sc.matrix.astype(np.float64)
    Minv = np.linalg.inv(M)
    L = prim.cell
    ops = []
    for W, w in zip(sym["rotations"], sym["translations"]):
        # W maps lattice vectors n (columns) to W n; supercell lattice vectors are the rows of M.
        img = (W @ M.T).T @ Minv
        if not np.allclose(img, np.round(img), atol=1e-8):
            continue
        x = frac @ W.T + w
        p_img = np.empty(prim.n_atoms, dtype=np.int64)
        n_img = np.empty((prim.n_atoms, 3), dtype=np.int64)
        for p in range(prim.n_atoms):
            d = x[p][None, :] - frac
            k = np.flatnonzero(np.all(np.abs(d - np.round(d)) < symprec * 10, axis=1)
                               & (prim.numbers == prim.numbers[p]))
            if len(k) != 1:
                raise RuntimeError("symmetry operation does not map the structure onto itself")
            p_img[p] = k[0]
            n_img[p] = np.round(d[k[0]]).astype(np.int64)
        R = L.T @ W @ np.linalg.inv(L.T)
        ops.append((W, R, p_img, n_img))
    return ops


def _atom_permutation(sc: Supercell, W, p_img, n_img, T) -> np.ndarray:
    """Permutation of supercell atoms under x ↦ W x + w + T (primitive fractional coordinates)."""
    M = sc.matrix
    n = sc.lattice[sc.s2l] @ W.T + n_img[sc.s2p] + np.asarray(T)[None, :]
    frac = n @ np.linalg.inv(M.astype(np.float64))
    n_red = np.round((frac - np.floor(frac + 1e-9)) @ M).astype(np.int64)
    key = {tuple(v): i for i, v in enumerate(sc.lattice)}
    lat_index = np.array([key[tuple(v)] for v in n_red])
    n_prim = sc.primitive.n_atoms
    return lat_index * n_prim + p_img[sc.s2p]


def _choose_directions(rotations: list[np.ndarray]) -> np.ndarray:
    """Fewest candidate directions whose images under ``rotations`` span 3D."""
    chosen: list[np.ndarray] = []
    images = np.zeros((0, 3))
    while np.linalg.matrix_rank(images, tol=1e-8) < 3:
        best, best_rank = None, np.linalg.matrix_rank(images, tol=1e-8) if len(images) else 0
        for c in _CANDIDATES:
            v = c / np.linalg.norm(c)
            new = np.concatenate([images, np.stack([R @ v for R in rotations])])
            r = np.linalg.matrix_rank(new, tol=1e-8)
            if r > best_rank:
                best, best_rank = v, r
        chosen.append(best)
        images = np.concatenate([images, np.stack([R @ best for R in rotations])])
    return np.array(chosen)


def plan_rows(supercell: Supercell, *, symprec: float = 1e-5) -> RowPlan:
    """Plan the symmetry-reduced Hessian-vector products for the home-cell rows of ``supercell``."""
    sc = supercell
    n_prim = sc.primitive.n_atoms
    ops = _supercell_ops(sc, symprec)
    if not ops:
        return identity_plan(n_prim)
    orbit_ops: list = [None] * n_prim
    site_ops: dict[int, list[SiteOp]] = {}
    atoms, dirs = [], []
    for i in range(n_prim):
        if orbit_ops[i] is not None:
            continue
        # i is a new representative: its site group, and the operations mapping it onto its orbit.
        site = []
        for W, R, p_img, n_img in ops:
            j = int(p_img[i])
            perm = _atom_permutation(sc, W, p_img, n_img, -n_img[i])
            if j == i:
                site.append(SiteOp(R, perm))
            if orbit_ops[j] is None:
                orbit_ops[j] = (i, SiteOp(R, perm))
        site_ops[i] = site
        for v in _choose_directions([s.rotation for s in site]):
            atoms.append(i)
            dirs.append(v)
    return RowPlan(np.array(atoms, dtype=np.int64), np.array(dirs), site_ops, tuple(orbit_ops), len(ops))


def rebuild_rows(plan: RowPlan, hvps: np.ndarray) -> np.ndarray:
    """Home-cell force constants (n_prim, n_super, 3, 3) from the planned Hessian-vector products.

    hvps: (n_hvp, n_super, 3), hvps[k, j, b] = Σ_a directions[k, a] · fc[atoms[k], j, a, b].
    Representative rows are solved by least squares over all site-symmetry images of the computed
    products (which also symmetrises them); other rows are rotated copies.
    """
    hvps = np.asarray(hvps, dtype=np.float64)
    n_super = hvps.shape[1]
    n_prim = len(plan.orbit_ops)
    rows = {}
    for rep in sorted(set(plan.atoms.tolist())):
        sel = np.flatnonzero(plan.atoms == rep)
        ops = plan.site_ops.get(rep) or [SiteOp(np.eye(3), np.arange(n_super))]
        V, H = [], []
        for k in sel:
            v, h = plan.directions[k], hvps[k]
            for op in ops:
                V.append(op.rotation @ v)
                hh = np.empty_like(h)
                hh[op.perm] = h @ op.rotation.T
                H.append(hh)
        V = np.array(V)
        H = np.stack(H)  # (m, n_super, 3)
        sol, *_ = np.linalg.lstsq(V, H.reshape(len(V), -1), rcond=None)
        rows[rep] = sol.reshape(3, n_super, 3).transpose(1, 0, 2)  # (n_super, a, b)
    fc = np.empty((n_prim, n_super, 3, 3))
    for i, entry in enumerate(plan.orbit_ops):
        rep, op = entry
        if op is None:
            fc[i] = rows[rep]
            continue
        R = op.rotation
        fc[i, op.perm] = np.einsum("ab,jbc,dc->jad", R, rows[rep], R)
    return fc
