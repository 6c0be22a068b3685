"""``gonze``: fc − fc_dd (commensurate-q subtraction, :mod:`phonjax.longrange.gonze`) + C_dd(q), as phonopy's
``DynamicalMatrixGL`` and QE's q2r + matdyn: frequencies at commensurate q unchanged. phonopy's G list (300
points) and Λ unless ``ewald_lambda`` is given; ``gonze_full_ewald`` uses the full Λ-independent Ewald sum."""
from __future__ import annotations

from phonjax.longrange.correction import BuildRequest, Correction, kernel_term, projected
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel, phonopy_recip_parameters
from phonjax.longrange.gonze import gonze_short_range_fc


def build(req: BuildRequest) -> Correction:
    prim, born = req.primitive, req.born
    if req.gonze_full_ewald:
        params = ewald_parameters(prim, born, lam=req.ewald_lambda, tolerance=req.tolerance, with_real_space=True)
    else:
        params = phonopy_recip_parameters(prim, born, num_g_points=req.num_g_points, lam=req.ewald_lambda)
    kern = make_dipole_kernel(prim, born, params)
    term = projected(kernel_term(kern), req.projector(), prim)
    sr, removed = gonze_short_range_fc(req.fc, req.supercell, lambda q: term(q, None))
    info = req.info("gonze")
    info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff, full_ewald=bool(req.gonze_full_ewald))
    return req.correction("gonze", term, short_range_fc=sr, removed_fc=removed, lam=params.lam, info=info)
