"""Mixed-space (Gonze) correction: remove the supercell-periodic dipole–dipole force constants.

As phonopy's ``DynamicalMatrixGL.make_Gonze_nac_dataset`` and QE's ``q2r`` (``rgd_blk`` with sign −1):
C_dd is evaluated at the commensurate q-points of the force-constant supercell (brought to their shortest
representative, since the truncated G sum is not exactly periodic), and transformed back to the supercell's
atoms without Wigner–Seitz images (at commensurate q all images of an atom carry the same phase):

    fc_dd[i, s, a, b] = 1/N Σ_k Re{ C_dd(q_k)[i, a, s2p(s), b] · exp(−2πi q_k·(r_s − r_i)) }

Because the same inverse transform of C(q_k) returns fc exactly, short_range_fc = fc − fc_dd equals phonopy's
short-range force constants, and C_sr(q_k) + C_dd(q_k) = C(q_k) at every commensurate q (frequencies there
are unchanged). With full Ewald C_dd, fc_dd is the real-space Ewald force constant matrix of the periodic
supercell of point dipoles (``supercell_dipole_fc``).
"""
from __future__ import annotations

import numpy as np

from phonjax.fourier import ws_images
from phonjax.structure import Supercell, commensurate_qpoints
from phonjax.longrange.ewald import fold_to_bz

__all__ = ["fold_to_bz", "supercell_dipole_fc", "gonze_short_range_fc", "ws_phase_sum"]


def supercell_dipole_fc(supercell: Supercell, dd, *, commensurate=None) -> np.ndarray:
    """Force constants (n_prim, n_super, 3, 3) eV/Å² whose commensurate Fourier components are ``dd(q)``.

    dd: callable q_red (nq, 3) → (nq, n, 3, n, 3) complex (e.g. a :class:`~phonjax.longrange.ewald.DipoleKernel`,
    evaluated without q direction).
    """
    M = supercell.matrix
    q = fold_to_bz(commensurate_qpoints(M) if commensurate is None else commensurate, supercell.primitive.cell)
    c = np.asarray(dd(q))  # (nk, n, 3, n, 3)
    n = supercell.primitive.n_atoms
    N = len(q)
    r_i = supercell.primitive.positions  # home-cell atoms (p2s = arange)
    r_s = supercell.crystal.positions
    dfrac = (r_s[None, :, :] - r_i[:, None, :]) @ np.linalg.inv(supercell.primitive.cell)  # (n, ns, 3)
    fc = np.zeros((n, len(r_s), 3, 3))
    step = max(1, int(2e7 // max(1, n * len(r_s) * 9)))  # bound the (k, i, a, s, b) temporaries
    for k0 in range(0, N, step):
        ph = np.exp(-2j * np.pi * np.einsum("kc,isc->kis", q[k0:k0 + step], dfrac))  # (nk, n, ns)
        cs = c[k0:k0 + step][:, :, :, supercell.s2p, :]  # (nk, i, a, s, b)
        fc += np.einsum("kiasb,kis->isab", cs, ph).real
    return fc / N


def gonze_short_range_fc(fc, supercell: Supercell, dd) -> tuple[np.ndarray, np.ndarray]:
    """(short_range_fc, fc_dd): fc minus the dipole–dipole force constants of the supercell (see module)."""
    fc = np.asarray(fc, dtype=np.float64)
    fc_dd = supercell_dipole_fc(supercell, dd)
    if fc.shape != fc_dd.shape:
        raise ValueError(f"force constants have shape {fc.shape}, expected {fc_dd.shape} for this supercell")
    return fc - fc_dd, fc_dd


def ws_phase_sum(supercell: Supercell, q_red, *, images=None) -> np.ndarray:
    """W(q)[i, j] = 1/N Σ_{s: s2p(s)=j} Σ_images w · exp(2πi q·(r_s + T − r_i)), (nq, n, n) complex.

    The Fourier transform (phonopy's convention) of a force-constant matrix that is 1 for every pair, divided
    by N: Wang's correction is C_na(q̂) ⊙ W(q). images: :func:`phonjax.fourier.ws_images` of the supercell.
    """
    im = ws_images(supercell) if images is None else images
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    ph = np.exp(2j * np.pi * np.einsum("qc,ismc->qism", q, im.frac))
    per_s = np.einsum("qism,ism->qis", ph, im.weight)
    n = supercell.primitive.n_atoms
    out = np.zeros((len(q), n, n), dtype=np.complex128)
    for j in range(n):
        out[:, :, j] = per_s[:, :, supercell.s2p == j].sum(-1)
    return out / supercell.n_cells
