"""C(q) + long range → q-space ASR (Eq. 14) → mass-weighted Hermitian D(q) (Eq. 15) → eigh (Eq. 16).

Pipeline for reduced q-points (nq, 3):

1. long-range strategy (lazy import of :func:`phonjax.longrange.make_correction`; "none" needs nothing):
   ``short_range_fc`` is Fourier-transformed (:mod:`phonjax.fourier`) and ``apply`` adds its q-space term.
   At q = Γ the non-analytic term needs a direction (``q_direction``, Cartesian; per q-point on band paths).
2. q-space ASR (Eq. 14): S_i = Σ_j C_tot(Γ)[i, :, j, :] (Γ without direction). The Hermitian part of S_i is
   subtracted from every diagonal block C(q)[i, :, i, :]; what remains of the row sums at Γ (the
   anti-Hermitian part of S_i, zero for symmetric force constants) is removed by the projector P C P with
   P = 1 − T Tᵀ / n (T: rigid translations), added as a q-independent correction. Acoustic modes at Γ are then
   zero to rounding, and the correction is the plain diagonal subtraction whenever S_i is symmetric.
3. D = ½(C + C†) / √(m_i m_j) (eV/Å²/amu), jitted ``eigh`` vmapped over q (q padded to buckets);
   ν = sign(λ) √|λ| × VASP_TO_THZ (THz; imaginary modes negative), or cm⁻¹ / meV.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from phonjax import units
from phonjax.fourier import bucket, fourier_fc, ws_images

__all__ = ["phonons", "dynamical_matrices", "qspace_asr_correction", "eigen_frequencies", "convert_units",
           "resolve_lr", "UNITS", "DynmatError"]

UNITS = {"THz": 1.0, "cm-1": units.THZ_TO_CM1, "meV": units.THZ_TO_MEV}
#: |q_cart| (1/Å, no 2π) below which a q-point is Γ.
GAMMA_TOL = 1e-10


class DynmatError(ValueError):
    """Bad input to the dynamical-matrix pipeline (unit, q-points, directions, long-range mode)."""


def convert_units(freqs_thz, unit: str):
    if unit not in UNITS:
        raise DynmatError(f"unknown frequency unit {unit!r}; choose one of {', '.join(UNITS)}")
    return np.asarray(freqs_thz) * UNITS[unit]


def resolve_lr(lr: str, born) -> str:
    """'auto' → 'gonze' with Born data, else 'none'."""
    if lr == "auto":
        return "gonze" if born is not None else "none"
    if lr != "none" and born is None:
        raise DynmatError(f"lr={lr!r} needs Born charges and ε∞ (born=... or a ForceConstants with born)")
    return lr


def qspace_asr_correction(c0) -> np.ndarray:
    """δ (3n, 3n) added to C(q) at every q (see module docstring, step 2). c0: C_tot(Γ) (n, 3, n, 3)."""
    c0 = np.asarray(c0)
    n = c0.shape[0]
    C = c0.reshape(3 * n, 3 * n)
    C = 0.5 * (C + C.conj().T)
    S = c0.sum(axis=2)  # (n, 3, 3): Σ_j C[i, a, j, b]
    Sh = 0.5 * (S + np.conj(np.swapaxes(S, 1, 2)))
    A = C.copy()
    for i in range(n):
        A[3 * i:3 * i + 3, 3 * i:3 * i + 3] -= Sh[i]
    T = np.tile(np.eye(3), (n, 1))  # (3n, 3)
    P = np.eye(3 * n) - T @ T.T / n
    return P @ A @ P - C


@partial(jax.jit, static_argnames=())
def _eig_kernel(cq, delta, inv_sqrt_m):
    """cq (nq, 3n, 3n) complex, delta (3n, 3n), inv_sqrt_m (3n,) → (eigenvalues (nq, 3n), vectors)."""
    c = cq + delta[None]
    c = 0.5 * (c + jnp.conj(jnp.swapaxes(c, 1, 2)))
    d = c * inv_sqrt_m[None, :, None] * inv_sqrt_m[None, None, :]
    return jnp.linalg.eigh(d)


def eigen_frequencies(cq, masses, delta=None, *, return_eigenvectors: bool = False):
    """Frequencies (nq, 3n) THz from C(q) (nq, n, 3, n, 3) and masses (n,) amu; optional ASR correction δ."""
    cq = np.asarray(cq)
    nq, n = cq.shape[0], cq.shape[1]
    c = cq.reshape(nq, 3 * n, 3 * n)
    nb = bucket(nq)
    c = np.concatenate([c, np.zeros((nb - nq, 3 * n, 3 * n), dtype=c.dtype)]).astype(np.complex128)
    d = np.zeros((3 * n, 3 * n), dtype=np.complex128) if delta is None else np.asarray(delta, np.complex128)
    ism = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=np.float64)), 3)
    w, v = _eig_kernel(jnp.asarray(c), jnp.asarray(d), jnp.asarray(ism))
    w = np.asarray(w)[:nq]
    f = np.sign(w) * np.sqrt(np.abs(w)) * units.VASP_TO_THZ
    if return_eigenvectors:
        return f, np.asarray(v)[:nq]
    return f


def _correction(fcobj, lr, born, ewald_lambda, leak_region, lo_projection):
    key = ("corr", lr, born, ewald_lambda, str(leak_region), bool(lo_projection))
    cache = fcobj._cache
    if key not in cache:
        if lr == "none":
            cache[key] = None
        else:
            from phonjax.longrange import make_correction
            kw = {}
            if leak_region is not None:
                kw["leak_region"] = leak_region
            if lo_projection:
                kw["lo_projection"] = True
            cache[key] = make_correction(lr, born, fcobj.supercell, fcobj.fc, ewald_lambda=ewald_lambda, **kw)
    return cache[key]


def _images(fcobj):
    if "ws" not in fcobj._cache:
        fcobj._cache["ws"] = ws_images(fcobj.supercell)
    return fcobj._cache["ws"]


def _directions(q_direction, nq: int):
    if q_direction is None:
        return None
    d = np.asarray(q_direction, dtype=np.float64)
    if d.shape == (3,):
        return np.broadcast_to(d, (nq, 3))
    if d.shape == (nq, 3):
        return d
    raise DynmatError(f"q_direction must be (3,) or (nq, 3) = ({nq}, 3), got {d.shape}")


def total_cq(fcobj, q, *, lr, born, q_direction, ewald_lambda, leak_region, lo_projection, asr):
    """(C_tot(q) (nq, n, 3, n, 3), δ or None) before mass weighting."""
    corr = _correction(fcobj, lr, born, ewald_lambda, leak_region, lo_projection)
    fc_sr = fcobj.fc if corr is None else corr.short_range_fc
    im = _images(fcobj)
    cq = fourier_fc(fc_sr, fcobj.supercell, q, images=im)
    dirs = _directions(q_direction, len(q))
    if corr is not None:
        cq_tot = corr.apply(cq, q, None)
        if dirs is not None:
            qc = q @ np.linalg.inv(fcobj.primitive.cell).T
            for k in np.flatnonzero(np.linalg.norm(qc, axis=1) < GAMMA_TOL):
                dk = dirs[k]
                if np.all(np.isfinite(dk)) and np.linalg.norm(dk) > 0:
                    cq_tot[k] = corr.apply(cq[k:k + 1], q[k:k + 1], dk)[0]
        cq = cq_tot
    delta = None
    if asr:
        key = ("asr", lr, born, ewald_lambda, str(leak_region), bool(lo_projection))
        if key not in fcobj._cache:
            g = np.zeros((1, 3))
            c0 = fourier_fc(fc_sr, fcobj.supercell, g, images=im)
            if corr is not None:
                c0 = corr.apply(c0, g, None)
            fcobj._cache[key] = qspace_asr_correction(c0[0])
        delta = fcobj._cache[key]
    return cq, delta


def _prepare(fcobj, qpoints, lr, born):
    q = np.asarray(qpoints, dtype=np.float64)
    if q.ndim == 1:
        q = q.reshape(1, 3)
    if q.ndim != 2 or q.shape[1] != 3:
        raise DynmatError(f"qpoints must have shape (nq, 3), got {np.shape(qpoints)}")
    if not np.all(np.isfinite(q)):
        raise DynmatError("q-points contain non-finite values")
    born = fcobj.born if born is None else born
    return q, born, resolve_lr(lr, born)


def phonons(fcobj, qpoints, *, lr="auto", born=None, q_direction=None, ewald_lambda=None, leak_region=None,
            lo_projection=False, asr=None, return_eigenvectors=False, unit="THz"):
    """Frequencies (nq, 3n) in ``unit`` (and eigenvectors (nq, 3n, 3n), columns = modes) of a ForceConstants."""
    if unit not in UNITS:
        raise DynmatError(f"unknown frequency unit {unit!r}; choose one of {', '.join(UNITS)}")
    q, born, lr = _prepare(fcobj, qpoints, lr, born)
    asr = fcobj.qspace_asr if asr is None else bool(asr)
    cq, delta = total_cq(fcobj, q, lr=lr, born=born, q_direction=q_direction, ewald_lambda=ewald_lambda,
                         leak_region=leak_region, lo_projection=lo_projection, asr=asr)
    res = eigen_frequencies(cq, fcobj.primitive.masses, delta, return_eigenvectors=return_eigenvectors)
    if return_eigenvectors:
        return convert_units(res[0], unit), res[1]
    return convert_units(res, unit)


def dynamical_matrices(fcobj, qpoints, *, lr="auto", born=None, q_direction=None, ewald_lambda=None,
                       leak_region=None, lo_projection=False, asr=None) -> np.ndarray:
    """D(q) = ½(C + C†)/√(m_i m_j), (nq, 3n, 3n) complex128 eV/Å²/amu (after the q-space ASR when on)."""
    q, born, lr = _prepare(fcobj, qpoints, lr, born)
    asr = fcobj.qspace_asr if asr is None else bool(asr)
    cq, delta = total_cq(fcobj, q, lr=lr, born=born, q_direction=q_direction, ewald_lambda=ewald_lambda,
                         leak_region=leak_region, lo_projection=lo_projection, asr=asr)
    n = cq.shape[1]
    c = cq.reshape(len(q), 3 * n, 3 * n) + (0 if delta is None else delta[None])
    c = 0.5 * (c + np.conj(np.swapaxes(c, 1, 2)))
    ism = np.repeat(1.0 / np.sqrt(fcobj.primitive.masses), 3)
    return c * ism[None, :, None] * ism[None, None, :]
