"""``recip``: reciprocal-only C_dd(q) with Λ (Eq. 13, the seed's best); Λ-dependent by construction. phonopy's
G list and Λ without ``ewald_lambda``; with it, the G cutoff follows from Λ and ``tolerance``."""
from __future__ import annotations

from phonjax.longrange.correction import BuildRequest, Correction, kernel_term, projected
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel, phonopy_recip_parameters


def build(req: BuildRequest) -> Correction:
    prim, born = req.primitive, req.born
    if req.ewald_lambda is None:
        params = phonopy_recip_parameters(prim, born, num_g_points=req.num_g_points)
    else:
        params = ewald_parameters(prim, born, lam=req.ewald_lambda, tolerance=req.tolerance, with_real_space=False)
    kern = make_dipole_kernel(prim, born, params)
    info = req.info("recip")
    info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff)
    return req.correction("recip", projected(kernel_term(kern), req.projector(), prim), lam=params.lam, info=info)
