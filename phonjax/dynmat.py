"""The phonon engine: C(q) + long range → q-space ASR (Eq. 14) → mass-weighted Hermitian D(q) (Eq. 15) → eigh
(Eq. 16). Every frequency in phonjax comes from here (band structures, DOS, predict, sharded q-points,
Λ scans).

Pipeline for force constants ``fc`` (a :class:`~phonjax.force_constants.ForceConstants`), reduced q-points
(nq, 3) and a prebuilt ``correction`` (a :class:`~phonjax.longrange.correction.Correction`, or None for no long
range; build it once with :meth:`phonjax.longrange.LongRange.correction`):

1. ``correction.short_range_fc`` (else ``fc.fc``) is Fourier-transformed (:mod:`phonjax.fourier`, Wigner–Seitz
   images) and the correction's q-space term is added. At q = Γ (|q_cart| < ``units.GAMMA_Q_TOL``) the
   non-analytic term needs a direction: ``q_direction`` (3,) or per q-point (nq, 3), in reduced coordinates of
   the reciprocal lattice (phonopy's convention), converted here to Cartesian (NaN rows: no direction). The
   Correction level itself takes Cartesian directions.
2. q-space ASR (Eq. 14): S_i = Σ_j C_tot(Γ)[i, :, j, :] (Γ without direction). The Hermitian part of S_i is
   subtracted from every diagonal block C(q)[i, :, i, :]; what remains of the row sums at Γ (the
   anti-Hermitian part of S_i, zero for symmetric force constants) is removed by the projector P C P with
   P = 1 − T Tᵀ / n (T: rigid translations), added as a q-independent correction δ.
3. D = ½(C + C†) / √(m_i m_j) (eV/Å²/amu), jitted ``eigh`` vmapped over q (q padded to buckets);
   ν = sign(λ) √|λ| × VASP_TO_THZ (THz; imaginary modes negative), or cm⁻¹ / meV. When only frequencies are
   wanted and JAX runs on the CPU, LAPACK's eigenvalues-only solver (NumPy ``eigvalsh``) is used instead: XLA's
   CPU ``eigh`` always computes eigenvectors, which costs 2× for 6×6 matrices and far more for larger cells (its
   divide-and-conquer back-transformation). On the CPU the frequencies always come from that solver, also
   when eigenvectors are requested (they then come from the jitted kernel), so that they do not depend on
   whether eigenvectors were asked for; on an accelerator the jitted kernel serves both.
4. On the CPU, frequencies of more than :data:`PIPELINE_CHUNK` q-points are computed in chunks, one producer
   thread building D(q) of the next chunk (the XLA kernels, which release the GIL) while the caller's thread
   solves the eigenvalues of the current one (LAPACK, which does not run in parallel with itself here): the
   same arithmetic per q-point, in order.

Nothing is cached on the force constants: callers that evaluate many q-lists keep the Correction (and, if they
like, the Wigner–Seitz images) and pass them in.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from phonjax import units
from phonjax.fourier import bucket, fourier_fc, ws_images

__all__ = ["phonons", "dynamical_matrices", "total_cq", "asr_delta", "qspace_asr_correction", "eigen_frequencies",
           "eig_kernel", "thz_from_eigenvalues", "mass_weighted", "convert_units", "check_qpoints",
           "cartesian_directions", "long_range_terms", "correction_frequencies", "UNITS", "DynmatError",
           "PIPELINE_CHUNK"]

UNITS = units.FREQUENCY_UNITS
#: q-points per step of the CPU pipeline of :func:`phonons` (module docstring, step 4); a power of two, so that
#: every full chunk fills its q bucket exactly
PIPELINE_CHUNK = 4096


class DynmatError(ValueError):
    """Bad input to the dynamical-matrix pipeline (unit, q-points, directions)."""


def convert_units(freqs_thz, unit: str):
    if unit not in UNITS:
        raise DynmatError(f"unknown frequency unit {unit!r}; choose one of {', '.join(UNITS)}")
    return np.asarray(freqs_thz) * UNITS[unit]


def check_qpoints(qpoints) -> np.ndarray:
    """(nq, 3) float64 reduced q-points (a single (3,) point becomes (1, 3)); DynmatError if malformed."""
    q = np.asarray(qpoints, dtype=np.float64)
    if q.ndim == 1:
        q = q.reshape(1, 3) if q.shape == (3,) else q
    if q.ndim != 2 or q.shape[1] != 3:
        raise DynmatError(f"qpoints must have shape (nq, 3), got {np.shape(qpoints)}")
    if not np.all(np.isfinite(q)):
        raise DynmatError("q-points contain non-finite values")
    return q


def cartesian_directions(primitive, q_direction, nq: int) -> np.ndarray | None:
    """(nq, 3) Cartesian directions (1/Å basis, no 2π) from reduced ``q_direction`` (3,) or (nq, 3); rows of NaN
    stay NaN (no direction). A finite zero row is refused."""
    if q_direction is None:
        return None
    d = np.asarray(q_direction, dtype=np.float64)
    if d.shape == (3,):
        d = np.broadcast_to(d, (nq, 3))
    elif d.shape != (nq, 3):
        raise DynmatError(f"q_direction must be (3,) or (nq, 3) = ({nq}, 3), got {d.shape}")
    finite = np.all(np.isfinite(d), axis=1)
    if np.any(finite & ~np.any(d != 0, axis=1)):
        raise DynmatError("q_direction must not be the zero vector (it is the direction of approach to Γ, in "
                          "reduced coordinates of the reciprocal lattice)")
    return d @ np.linalg.inv(primitive.cell).T


def gamma_mask(primitive, q) -> np.ndarray:
    """(nq,) bool: |q_cart| < units.GAMMA_Q_TOL."""
    return np.linalg.norm(np.asarray(q) @ np.linalg.inv(primitive.cell).T, axis=1) < units.GAMMA_Q_TOL


def long_range_terms(correction, primitive, q, dirs_cart) -> np.ndarray:
    """The correction's term (nq, n, 3, n, 3) at reduced q, with the Cartesian direction dirs_cart[k] (finite
    rows) used at Γ points."""
    out = correction.long_range(q, None)
    if dirs_cart is not None:
        for k in np.flatnonzero(gamma_mask(primitive, q)):
            if np.all(np.isfinite(dirs_cart[k])):
                out[k] = correction.long_range(q[k:k + 1], dirs_cart[k])[0]
    return out


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


def _short_range(fc, correction):
    return fc.fc if correction is None else correction.short_range_fc


def asr_delta(fc, correction=None, *, images=None) -> np.ndarray:
    """The q-space ASR δ (3n, 3n) of ``fc`` with ``correction`` (from C_tot(Γ) without direction)."""
    g = np.zeros((1, 3))
    c0 = fourier_fc(_short_range(fc, correction), fc.supercell, g, images=images)
    if correction is not None:
        c0 = correction.apply(c0, g, None)
    return qspace_asr_correction(c0[0])


def total_cq(fc, q, correction=None, *, q_direction=None, images=None) -> np.ndarray:
    """C_tot(q) (nq, n, 3, n, 3) complex128 eV/Å² before mass weighting and ASR; q_direction reduced."""
    q = check_qpoints(q)
    im = ws_images(fc.supercell) if images is None else images
    cq = fourier_fc(_short_range(fc, correction), fc.supercell, q, images=im)
    dirs = cartesian_directions(fc.primitive, q_direction, len(q))
    if correction is None:
        return cq
    return cq + long_range_terms(correction, fc.primitive, q, dirs)


@partial(jax.jit, static_argnames=())
def eig_kernel(cq, delta, inv_sqrt_m):
    """cq (nq, 3n, 3n) complex, delta (3n, 3n), inv_sqrt_m (3n,) → (eigenvalues (nq, 3n), vectors)."""
    c = cq + delta[None]
    c = 0.5 * (c + jnp.conj(jnp.swapaxes(c, 1, 2)))
    d = c * inv_sqrt_m[None, :, None] * inv_sqrt_m[None, None, :]
    return jnp.linalg.eigh(d)


def thz_from_eigenvalues(w) -> np.ndarray:
    """ν = sign(λ) √|λ| × VASP_TO_THZ (THz) from eigenvalues λ of D (eV/Å²/amu)."""
    w = np.asarray(w)
    return np.sign(w) * np.sqrt(np.abs(w)) * units.VASP_TO_THZ


def mass_weighted(c, masses) -> np.ndarray:
    """D = ½(C̃ + C̃†), C̃ = C / √(m_i m_j): c (nq, 3n, 3n) eV/Å², masses (n,) amu → eV/Å²/amu."""
    ism = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=np.float64)), 3)
    d = np.asarray(c) * np.outer(ism, ism)[None]
    d += np.conj(np.swapaxes(d, 1, 2))
    d *= 0.5
    return d


def _host_dynmat(c, masses, delta) -> np.ndarray:
    """D(q) (nq, 3n, 3n) for the host solver from C(q) (nq, 3n, 3n) and the ASR δ (None: none)."""
    return mass_weighted(c if delta is None else c + np.asarray(delta)[None], masses)


def _host_frequencies(d) -> np.ndarray:
    """THz from D(q) by LAPACK's eigenvalues-only solver."""
    return thz_from_eigenvalues(np.linalg.eigvalsh(d))


def _pipelined_frequencies(fc, q, correction, q_direction, delta, images) -> np.ndarray:
    """Frequencies (nq, 3n) THz on the CPU: D(q) of chunk k + 1 built by one producer thread while this thread
    solves chunk k (module docstring, step 4)."""
    qd = None if q_direction is None else np.asarray(q_direction, dtype=np.float64)
    per_q = qd is not None and qd.ndim == 2
    n = fc.primitive.n_atoms

    def produce(lo):
        hi = min(lo + PIPELINE_CHUNK, len(q))
        cq = total_cq(fc, q[lo:hi], correction, q_direction=qd[lo:hi] if per_q else qd, images=images)
        return _host_dynmat(cq.reshape(hi - lo, 3 * n, 3 * n), fc.primitive.masses, delta)

    with ThreadPoolExecutor(1, thread_name_prefix="phonjax-dynmat") as pool:
        pending = [pool.submit(produce, lo) for lo in range(0, len(q), PIPELINE_CHUNK)]
        return np.concatenate([_host_frequencies(p.result()) for p in pending])


def eigen_frequencies(cq, masses, delta=None, *, return_eigenvectors: bool = False):
    """Frequencies (nq, 3n) THz from C(q) (nq, n, 3, n, 3) and masses (n,) amu; optional ASR correction δ."""
    cq = np.asarray(cq)
    nq, n = cq.shape[0], cq.shape[1]
    c = cq.reshape(nq, 3 * n, 3 * n)
    cpu = jax.default_backend() == "cpu"
    if cpu:  # eigenvalues from LAPACK's eigenvalues-only solver (module docstring, step 3)
        f = _host_frequencies(_host_dynmat(c, masses, delta))
        if not return_eigenvectors:
            return f
    nb = bucket(nq)
    c = np.concatenate([c, np.zeros((nb - nq, 3 * n, 3 * n), dtype=c.dtype)]).astype(np.complex128)
    d = np.zeros((3 * n, 3 * n), dtype=np.complex128) if delta is None else np.asarray(delta, np.complex128)
    ism = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=np.float64)), 3)
    w, v = eig_kernel(jnp.asarray(c), jnp.asarray(d), jnp.asarray(ism))
    f = f if cpu else thz_from_eigenvalues(np.asarray(w)[:nq])
    if return_eigenvectors:
        return f, np.asarray(v)[:nq]
    return f


def phonons(fc, qpoints, correction=None, *, q_direction=None, asr: bool | None = None,
            return_eigenvectors: bool = False, unit: str = "THz", images=None):
    """Frequencies (nq, 3n) in ``unit`` (and eigenvectors (nq, 3n, 3n), columns = modes) of force constants
    ``fc`` at reduced ``qpoints`` with a prebuilt ``correction`` (None: no long range). q_direction: reduced,
    (3,) or (nq, 3). asr: q-space ASR (Eq. 14); None → ``fc.qspace_asr``."""
    if unit not in UNITS:
        raise DynmatError(f"unknown frequency unit {unit!r}; choose one of {', '.join(UNITS)}")
    q = check_qpoints(qpoints)
    asr = fc.qspace_asr if asr is None else bool(asr)
    im = ws_images(fc.supercell) if images is None else images
    delta = asr_delta(fc, correction, images=im) if asr else None
    if len(q) > PIPELINE_CHUNK and not return_eigenvectors and jax.default_backend() == "cpu":
        cartesian_directions(fc.primitive, q_direction, len(q))  # refuse a bad direction before any work
        return convert_units(_pipelined_frequencies(fc, q, correction, q_direction, delta, im), unit)
    cq = total_cq(fc, q, correction, q_direction=q_direction, images=im)
    res = eigen_frequencies(cq, fc.primitive.masses, delta, return_eigenvectors=return_eigenvectors)
    if return_eigenvectors:
        return convert_units(res[0], unit), res[1]
    return convert_units(res, unit)


def dynamical_matrices(fc, qpoints, correction=None, *, q_direction=None, asr: bool | None = None) -> np.ndarray:
    """D(q) = ½(C + C†)/√(m_i m_j), (nq, 3n, 3n) complex128 eV/Å²/amu (after the q-space ASR when on)."""
    q = check_qpoints(qpoints)
    asr = fc.qspace_asr if asr is None else bool(asr)
    im = ws_images(fc.supercell)
    cq = total_cq(fc, q, correction, q_direction=q_direction, images=im)
    n = cq.shape[1]
    c = cq.reshape(len(q), 3 * n, 3 * n)
    if asr:
        c = c + asr_delta(fc, correction, images=im)[None]
    return mass_weighted(c, fc.primitive.masses)


def correction_frequencies(correction, supercell, q_red, q_direction_cart=None, *, images=None) -> np.ndarray:
    """Frequencies (nq, 3n) THz of Fourier(correction.short_range_fc) + the correction's term, without q-space
    ASR, for a Correction not tied to a ForceConstants (Λ scans, strategy tests). q_direction_cart: the
    Cartesian (3,) direction used at q = 0, as :meth:`Correction.apply` takes it."""
    q = check_qpoints(q_red)
    cq = fourier_fc(correction.short_range_fc, supercell, q, images=images)
    cq = correction.apply(cq, q, q_direction_cart)
    return eigen_frequencies(cq, supercell.primitive.masses)
