"""Symmetrisation (seed Eq. 2) and real-space ASR of home-cell force constants, with diagnostics.

Eq. 2: H_kalb(R) ← ½[H_kalb(R) + H_lbka(−R)]. ASR (translational invariance Σ_s fc[i,s] = 0): "simple" (QE: the
self term absorbs the row sum) or "phonopy" (row sums removed uniformly over the row, alternated with Eq. 2,
phonopy's compact-fc symmetrisation). Violations are reported in :class:`~phonjax.fc_record.FcReport`.
fc: (n_prim, n_super, 3, 3) eV/Å².
"""
from __future__ import annotations

import numpy as np

from phonjax.fc_record import FcReport, ForceConstantsError
from phonjax.structure import Supercell, lattice_index

__all__ = ["ASR_MODES", "permutation_partner", "asr_violation", "permutation_violation", "symmetrize_fc",
           "apply_asr", "finalize_fc"]

ASR_MODES = ("phonopy", "simple", "none")


def permutation_partner(supercell: Supercell) -> np.ndarray:
    """(n_prim, n_super) index s' such that fc[i, s] pairs with fc[s2p[s], s'] under Eq. 2 (s' = atom i in
    the lattice cell −R_s, reduced into the supercell)."""
    n = supercell.primitive.n_atoms
    minus = lattice_index(supercell, -supercell.lattice)  # (n_cells,)
    return minus[supercell.s2l][None, :] * n + np.arange(n)[:, None]


def _partner(fc: np.ndarray, supercell: Supercell) -> np.ndarray:
    part = permutation_partner(supercell)  # (n, ns)
    j = supercell.s2p[None, :].repeat(fc.shape[0], 0)
    return np.swapaxes(fc[j, part], -1, -2)  # fc[j, s', b, a]


def asr_violation(fc) -> float:
    """max |Σ_s fc[i, s, a, b]| (eV/Å²)."""
    return float(np.abs(np.asarray(fc).sum(axis=1)).max())


def permutation_violation(fc, supercell: Supercell) -> float:
    """max |fc[i,s,a,b] − fc[j,s',b,a]| (eV/Å²), the Eq. 2 asymmetry."""
    fc = np.asarray(fc)
    return float(np.abs(fc - _partner(fc, supercell)).max())


def symmetrize_fc(fc, supercell: Supercell) -> np.ndarray:
    """Eq. 2: ½[fc[i,s,a,b] + fc[j,s',b,a]] (index permutation symmetry)."""
    fc = np.asarray(fc, dtype=np.float64)
    return 0.5 * (fc + _partner(fc, supercell))


def apply_asr(fc, supercell: Supercell, kind: str = "phonopy", *, iterations: int = 3) -> np.ndarray:
    """Translational invariance of the home-cell rows.

    "simple" (QE): fc[i, i, a, b] −= Σ_s fc[i, s, a, b].  "phonopy": row sums removed uniformly from every
    element of the row, alternated ``iterations`` times with Eq. 2, ending on the row-sum step (row sums are
    then zero to rounding; Eq. 2 holds to the size of the last correction).  "none": unchanged.
    """
    fc = np.array(fc, dtype=np.float64)
    if kind == "none":
        return fc
    if kind == "simple":
        idx = np.arange(fc.shape[0])
        fc[idx, idx] -= fc.sum(axis=1)
        return fc
    if kind == "phonopy":
        ns = fc.shape[1]
        for k in range(iterations):
            fc -= fc.sum(axis=1, keepdims=True) / ns
            if k < iterations - 1:
                fc = symmetrize_fc(fc, supercell)
        return fc
    raise ForceConstantsError(f"unknown ASR kind {kind!r}; choose one of {', '.join(ASR_MODES)}")


def finalize_fc(fc, supercell: Supercell, *, symmetrize: bool, asr: str | None, mode: str = "", n_hvp: int = 0,
                wall_time_s: float = 0.0) -> tuple[np.ndarray, FcReport]:
    """Apply Eq. 2 and ASR and report the violations before and after."""
    asr = "none" if asr is None else asr
    if asr not in ASR_MODES:
        raise ForceConstantsError(f"unknown ASR kind {asr!r}; choose one of {', '.join(ASR_MODES)}")
    fc = np.asarray(fc, dtype=np.float64)
    a0, p0 = asr_violation(fc), permutation_violation(fc, supercell)
    out = symmetrize_fc(fc, supercell) if symmetrize else fc
    out = apply_asr(out, supercell, asr)
    rep = FcReport(a0, asr_violation(out), p0, permutation_violation(out, supercell), asr, bool(symmetrize), mode,
                   int(n_hvp), float(wall_time_s))
    return out, rep


