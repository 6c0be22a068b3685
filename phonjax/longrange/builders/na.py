"""``na``: the non-analytic term (Eq. 5), only at q = 0 and only with a direction of approach."""
from __future__ import annotations

import numpy as np

from phonjax import units
from phonjax.longrange.correction import BuildRequest, Correction, projected
from phonjax.longrange.nac import na_term


def build(req: BuildRequest) -> Correction:
    prim, born = req.primitive, req.born
    n = prim.n_atoms
    rec_t = np.linalg.inv(prim.cell).T

    def term(q, qd):
        out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
        if qd is None:
            return out
        at_gamma = np.linalg.norm(q @ rec_t, axis=1) < units.EWALD_Q_ZERO_TOL
        if np.any(at_gamma):
            out[at_gamma] = na_term(qd, born, prim.volume)
        return out

    return req.correction("na", projected(term, req.projector(), prim))
