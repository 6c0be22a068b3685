"""Λ calibration (the seed's Figure-4 study): how ``recip`` / ``ewald`` / ``gonze`` frequencies move with Λ.

``lambda_scan`` returns frequencies per Λ and mode (data only; plotting belongs to phonjax.plot or the
benchmark script). It carries a small self-contained Fourier transform with Wigner–Seitz images (phonopy's
convention) so it works on any (supercell, fc) pair; the phonon engine's own transform gives the same C(q).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phonjax import units
from phonjax.born import Born
from phonjax.structure import Supercell
from phonjax.longrange.gonze import ws_images
from phonjax.longrange.strategies import Correction, make_correction

__all__ = ["LambdaScan", "lambda_scan", "fourier_ws", "correction_frequencies"]


def fourier_ws(fc, supercell: Supercell, q_red, *, images=None) -> np.ndarray:
    """C(q)[i, a, j, b] = Σ_{s: s2p(s)=j} Σ_images w · fc[i, s, a, b] · exp(2πi q·(r_s + T − r_i)),
    (nq, n, 3, n, 3) complex128 eV/Å² (phonopy's convention)."""
    vec, w = ws_images(supercell) if images is None else images
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    frac = vec @ np.linalg.inv(supercell.primitive.cell)
    ph = np.einsum("qism,ism->qis", np.exp(2j * np.pi * np.einsum("qc,ismc->qism", q, frac)), w)
    n = supercell.primitive.n_atoms
    out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
    for j in range(n):
        sel = supercell.s2p == j
        out[:, :, :, j, :] = np.einsum("qis,isab->qiab", ph[:, :, sel], np.asarray(fc)[:, sel])
    return out


def correction_frequencies(corr: Correction, supercell: Supercell, q_red, q_direction=None, *, images=None):
    """Frequencies (nq, 3n) THz (imaginary → negative) of Fourier(short_range_fc) + long range."""
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    cq = corr.apply(fourier_ws(corr.short_range_fc, supercell, q, images=images), q, q_direction)
    n = supercell.primitive.n_atoms
    m = np.repeat(supercell.primitive.masses, 3)
    d = cq.reshape(len(q), 3 * n, 3 * n) / np.sqrt(np.outer(m, m))
    d = 0.5 * (d + np.conj(np.swapaxes(d, 1, 2)))
    w = np.linalg.eigvalsh(d)
    return np.sign(w) * np.sqrt(np.abs(w)) * units.VASP_TO_THZ


@dataclass(frozen=True, eq=False)
class LambdaScan:
    """lambdas (nλ,), qpoints (nq, 3), frequencies {mode: (nλ, nq, 3n) THz}, reference (nq, 3n) THz
    (``gonze`` at phonopy's default Λ)."""

    lambdas: np.ndarray
    qpoints: np.ndarray
    frequencies: dict
    reference: np.ndarray

    def deviation(self, mode: str) -> np.ndarray:
        """(nλ,) max |f − f_reference| THz over q and branches."""
        return np.abs(self.frequencies[mode] - self.reference[None]).max(axis=(1, 2))

    def spread(self, mode: str) -> float:
        """max − min over Λ of the frequencies, maximised over q and branches (THz): the Λ-dependence."""
        f = self.frequencies[mode]
        return float((f.max(0) - f.min(0)).max())


def lambda_scan(fc_obj, born: Born | None, lambdas, qpoints, *, fc=None, modes=("recip", "ewald", "gonze"),
                q_direction=None, tolerance: float = 1e-12) -> LambdaScan:
    """Frequencies at ``qpoints`` for each Λ in ``lambdas`` (phonopy convention) and each mode.

    fc_obj: a ForceConstants-like object (``.supercell``, ``.fc``, optional ``.born``) or a Supercell together
    with ``fc=`` (n_prim, n_super, 3, 3). born: None → ``fc_obj.born``.
    """
    if isinstance(fc_obj, Supercell):
        if fc is None:
            raise ValueError("lambda_scan(supercell, ...) needs fc=")
        supercell = fc_obj
    else:
        supercell, fc = fc_obj.supercell, fc_obj.fc
        born = getattr(fc_obj, "born", None) if born is None else born
    if born is None:
        raise ValueError("lambda_scan needs Born charges and ε∞")
    lambdas = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    q = np.asarray(qpoints, dtype=np.float64).reshape(-1, 3)
    images = ws_images(supercell)
    out = {}
    for mode in modes:
        fr = []
        for lam in lambdas:
            corr = make_correction(mode, born, supercell, fc, ewald_lambda=float(lam), tolerance=tolerance)
            fr.append(correction_frequencies(corr, supercell, q, q_direction, images=images))
        out[mode] = np.array(fr)
    ref = correction_frequencies(make_correction("gonze", born, supercell, fc), supercell, q, q_direction,
                                 images=images)
    return LambdaScan(lambdas, q, out, ref)
