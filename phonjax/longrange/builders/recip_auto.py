"""``recip-auto``: reciprocal-only C_dd(q) with Λ* fitted to the force constants' own polar response near Γ
(:mod:`phonjax.longrange.range_matched`) — for ML force constants that hold the short-ranged (real-space) part.
Λ* is deterministic and independent of any user Λ (``ewald_lambda`` is refused); ``Correction.lam`` is Λ* and
``info["lambda_fit"]`` the fit record."""
from __future__ import annotations

from phonjax.longrange.correction import BuildRequest, Correction, LongRangeModeError, kernel_term, projected
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel
from phonjax.longrange.range_matched import fit_model_lambda


def build(req: BuildRequest) -> Correction:
    if req.ewald_lambda is not None:
        raise LongRangeModeError("lr='recip-auto' chooses Λ itself from the force constants; "
                                 "drop ewald_lambda (or use lr='recip' for a fixed Λ)")
    prim, born = req.primitive, req.born
    fit = fit_model_lambda(req.fc, req.supercell, born)
    params = ewald_parameters(prim, born, lam=fit.lam, tolerance=req.tolerance, with_real_space=False)
    kern = make_dipole_kernel(prim, born, params)
    info = req.info("recip-auto")
    info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff, lambda_fit=fit.as_dict())
    return req.correction("recip-auto", projected(kernel_term(kern), req.projector(), prim), lam=params.lam,
                          info=info)
