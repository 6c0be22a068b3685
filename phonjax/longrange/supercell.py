"""Dipole–dipole force constants, energies and forces of a periodic supercell (for dataset / fine-tuning code).

``ewald_supercell_fc(supercell, born)`` is the real-space Ewald force-constant matrix of the periodic
supercell of point dipoles p_k = Z_k u_k in a medium ε∞ (home-cell rows, then expanded to the full
(N_s, N_s) matrix by lattice translations). The harmonic dipole energy of displacements u (Å) is
E = ½ Σ u_s·Φ_st·u_t (eV) and the forces F = −Φ u (eV/Å); :func:`dipole_energy_forces` evaluates both with
jax.numpy (differentiable, jit-able with a fixed Φ).
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from phonjax.born import Born
from phonjax.structure import Supercell
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel
from phonjax.longrange.gonze import supercell_dipole_fc

__all__ = ["ewald_supercell_fc", "expand_home_rows", "dipole_energy_forces"]


def expand_home_rows(fc_rows, supercell: Supercell) -> np.ndarray:
    """(n_prim, N_s, 3, 3) home-cell rows → full (N_s, N_s, 3, 3) by lattice translations:
    Φ[s, t] = Φ[p(s), t − L(s)] with t − L(s) the supercell atom at r_t − L(s) (mod the supercell)."""
    fc_rows = np.asarray(fc_rows)
    prim = supercell.primitive
    ns = supercell.crystal.n_atoms
    sfrac = supercell.crystal.scaled_positions
    Lcart = supercell.lattice @ prim.cell  # (N_cells, 3)
    inv_sc = np.linalg.inv(supercell.crystal.cell)
    full = np.empty((ns, ns, 3, 3))
    for s in range(ns):
        shift = Lcart[supercell.s2l[s]] @ inv_sc
        d = (sfrac - shift)[:, None, :] - sfrac[None, :, :]
        d -= np.round(d)
        idx = np.argmin(np.linalg.norm(d @ supercell.crystal.cell, axis=-1), axis=1)  # t → t − L(s)
        full[s] = fc_rows[supercell.s2p[s], idx]
    return full


def ewald_supercell_fc(supercell: Supercell, born: Born, *, lam: float | None = None, tolerance: float = 1e-12,
                       full: bool = True) -> np.ndarray:
    """Real-space Ewald dipole force constants of the periodic supercell (eV/Å²), Λ-independent.

    full=True: (N_s, N_s, 3, 3); False: home-cell rows (n_prim, N_s, 3, 3) in the project's fc layout.
    """
    prim = supercell.primitive
    kern = make_dipole_kernel(prim, born, ewald_parameters(prim, born, lam=lam, tolerance=tolerance))
    rows = supercell_dipole_fc(supercell, kern)
    return expand_home_rows(rows, supercell) if full else rows


def dipole_energy_forces(displacements, fc_full):
    """(E eV, F (N_s, 3) eV/Å) of displacements (N_s, 3) Å for a full (N_s, N_s, 3, 3) dipole fc matrix."""
    u = jnp.asarray(displacements)
    phi = jnp.asarray(fc_full)
    f = -jnp.einsum("stab,tb->sa", phi, u)
    return -0.5 * jnp.sum(f * u), f
