"""``ewald`` (full Ewald C_dd(q) added; seed (a)) and ``ewald-leak`` (fc − H_DD-Leak(region) + full Ewald
C_dd(q); seed (b, c)). Λ-independent: ``ewald_lambda`` only moves work between the two Ewald sums."""
from __future__ import annotations

from phonjax.longrange.correction import BuildRequest, Correction, LongRangeModeError, kernel_term, projected
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel
from phonjax.longrange.leak import leak_fc, leak_pairs, leak_q, parse_leak_region


def _kernel(req: BuildRequest):
    params = ewald_parameters(req.primitive, req.born, lam=req.ewald_lambda, tolerance=req.tolerance,
                              with_real_space=True)
    return params, make_dipole_kernel(req.primitive, req.born, params)


def build(req: BuildRequest) -> Correction:
    params, kern = _kernel(req)
    info = req.info("ewald")
    info.update(n_g=len(params.g_vectors), n_r=len(params.r_vectors), tolerance=req.tolerance)
    return req.correction("ewald", projected(kernel_term(kern), req.projector(), req.primitive), lam=params.lam,
                          info=info)


def build_leak(req: BuildRequest) -> Correction:
    if req.leak_region is None:
        raise LongRangeModeError("lr='ewald-leak' needs leak_region ('sphere:R' or 'box:N N N')")
    params, kern = _kernel(req)
    prim = req.primitive
    region = parse_leak_region(req.leak_region)
    info = req.info("ewald-leak")
    info["leak_region"] = region
    info.update(n_g=len(params.g_vectors), n_r=len(params.r_vectors), tolerance=req.tolerance)
    Q = req.projector()
    if Q is not None:
        # projected leak removal must act in q-space: add Q (C_dd − C_leak) Qᵀ, keep fc as is
        pairs = leak_pairs(prim, req.born, region)
        term = projected(lambda q, qd: kern(q, qd) - leak_q(q, prim, pairs), Q, prim)
        return req.correction("ewald-leak", term, lam=params.lam, info=info)
    removed = leak_fc(req.supercell, req.born, region)
    return req.correction("ewald-leak", projected(kernel_term(kern), Q, prim), short_range_fc=req.fc - removed,
                          removed_fc=removed, lam=params.lam, info=info)
