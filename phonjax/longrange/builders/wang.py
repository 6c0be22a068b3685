"""``wang``: C_na(q̂ = q/|q|) ⊙ W(q) (Wang et al. 2010), W the Wigner–Seitz phase sum of the supercell."""
from __future__ import annotations

import numpy as np

from phonjax import units
from phonjax.fourier import ws_images
from phonjax.longrange.correction import BuildRequest, Correction, projected
from phonjax.longrange.gonze import ws_phase_sum
from phonjax.longrange.nac import na_term


def build(req: BuildRequest) -> Correction:
    prim, born, supercell = req.primitive, req.born, req.supercell
    n = prim.n_atoms
    images = ws_images(supercell)
    rec_t = np.linalg.inv(prim.cell).T

    def term(q, qd):
        out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
        W = ws_phase_sum(supercell, q, images=images)
        qc = q @ rec_t
        for k in range(len(q)):
            if np.linalg.norm(qc[k]) < units.EWALD_Q_ZERO_TOL:
                if qd is None:
                    continue
                d = qd
            else:
                d = qc[k]
            out[k] = na_term(d, born, prim.volume) * W[k][:, None, :, None]
        return out

    return req.correction("wang", projected(term, req.projector(), prim))
