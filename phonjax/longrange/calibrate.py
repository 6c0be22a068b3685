"""Λ calibration (the seed's Figure-4 study): how ``recip`` / ``ewald`` / ``gonze`` frequencies move with Λ.

``lambda_scan`` returns frequencies per Λ and mode (data only; plotting belongs to phonjax.plot or the
benchmark script). It works on any (supercell, fc) pair through the phonon engine's
:func:`phonjax.dynmat.correction_frequencies` (no q-space ASR); q_direction is Cartesian there, as the
Correction takes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phonjax.born import Born
from phonjax.dynmat import correction_frequencies
from phonjax.fourier import ws_images
from phonjax.structure import Supercell
from phonjax.longrange.strategies import make_correction

__all__ = ["LambdaScan", "lambda_scan"]


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
