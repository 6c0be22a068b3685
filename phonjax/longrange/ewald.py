"""Dipole–dipole force constants C_dd(q) by Ewald summation (Gonze & Lee, PRB 55, 10355 (1997)).

Reading of the seed's Eqs. 6–9 implemented here (e²/(4πε0) = ``born.factor``, V the primitive volume):

  Eq. 6 (reciprocal sum, phonopy's C-type phase):
      R_ij(q) = factor·4π/V Σ_{G, |q+G| > 0} Z_iᵀ [K Kᵀ / (K·ε·K)] Z_j · exp(−K·ε·K / 4Λ²) · exp(2πi G·(τ_i − τ_j)),
      K = q + G in Cartesian 1/Å **without** 2π (q_cart = q_red @ inv(cell).T), so Λ is phonopy's Λ.
  Eq. 7 (real-space erfc sum over the lattice, d = R + τ_j − τ_i ≠ 0, Λ_G = 2πΛ):
      S_ij(q) = −factor·Λ_G³/√det ε Σ_R Z_iᵀ H(Λ_G Δ, Λ_G D) Z_j · exp(2πi q·d),
      Δ = ε⁻¹ d, D = √(d·ε⁻¹·d),
      H_ab(x, y) = x_a x_b [3 erfc(y)/y³ + 2/√π e^{−y²} (3/y² + 2)] / y² − (ε⁻¹)_ab [erfc(y)/y³ + 2/√π e^{−y²}/y²].
      (−Λ_G³H/√det ε = −∂_a∂_b [erfc(Λ_G D)/(√det ε D)]: the short-range half of the screened dipole tensor.)
  Eq. 8 (limiting term, removes the self interaction the reciprocal sum contains):
      L_i = −factor·4Λ_G³/(3√π) Z_iᵀ ε⁻¹ Z_i / √det ε   (on the diagonal block i = j).
  Eq. 9 (q = 0 subtraction, acoustic sum rule):
      C_dd(q)_ij = [R + S + δ_ij L](q)_ij − δ_ij Σ_k [R + S + δ_ik L](0)_ik ,   the G = 0 term dropped at q = 0.
  The limiting term cancels in Eq. 9; it matters only without the subtraction (``subtract_q0=False``: the
  plain lattice sum of dipole–dipole interactions excluding each dipole's self interaction).

The total (R + S + L) is independent of Λ once both sums are converged; the reciprocal-only variant (Eq. 13:
R alone, minus its own q = 0 sum) is phonopy's default and depends on Λ when Λ is large for the supercell.

At q = 0 (|q+G| < 1e-5 Å⁻¹) the G = 0 term is dropped (TO = LO), or, with a Cartesian ``q_direction`` q̂,
replaced by the non-analytic term Z_iᵀ q̂ q̂ᵀ Z_j / (q̂·ε·q̂) (Eq. 5, times factor·4π/V).

Output arrays: (nq, n, 3, n, 3) complex128 in eV/Å² (not mass-weighted), C[q, i, a, j, b].
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import itertools
import math

import numpy as np

from phonjax.buckets import q_bucket
import jax
import jax.numpy as jnp

from phonjax import units
from phonjax.born import Born, BornError
from phonjax.longrange.ewald_recip import add_na_terms, recip_sum, recip_tables
from phonjax.structure import Crystal

__all__ = ["EwaldParameters", "ewald_parameters", "phonopy_recip_parameters", "dipole_dipole",
           "DipoleKernel", "make_dipole_kernel", "QDirectionError", "Q_ZERO_TOL", "cartesian_q",
           "pad_bucket", "fold_to_bz", "bz_representatives", "owner_mean"]

#: |q + G| (1/Å, no 2π) below which a term counts as the q = 0 term (see :data:`phonjax.units.EWALD_Q_ZERO_TOL`).
Q_ZERO_TOL = units.EWALD_Q_ZERO_TOL


class QDirectionError(ValueError):
    """Invalid q direction (zero length, wrong shape)."""


def cartesian_q(q_red, crystal: Crystal) -> np.ndarray:
    """q (reduced, no 2π) → Cartesian 1/Å without 2π: q_red @ inv(cell).T."""
    return np.asarray(q_red, dtype=np.float64) @ np.linalg.inv(crystal.cell).T


def check_q_direction(q_direction) -> np.ndarray | None:
    """None or a finite non-zero (3,) vector (returned as float64); raise :class:`QDirectionError` otherwise."""
    if q_direction is None:
        return None
    d = np.asarray(q_direction, dtype=np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)):
        raise QDirectionError(f"q_direction must be 3 finite numbers, got {q_direction!r}")
    if np.linalg.norm(d) < 1e-12:
        raise QDirectionError("q_direction has zero length")
    return d


def fold_to_bz(q_red, cell) -> np.ndarray:
    """Shortest representatives q + n (n integer) of reduced q-points (Cartesian metric of ``inv(cell)``);
    ties (zone boundary) go to the first candidate within 1e-10."""
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    base = np.floor(q + 1e-12)
    qq = q - base
    rec_t = np.linalg.inv(np.asarray(cell)).T
    shifts = np.array(list(itertools.product(range(-2, 2), repeat=3)), dtype=np.float64)
    cand = qq[:, None, :] + shifts[None, :, :]
    norm = np.linalg.norm(cand @ rec_t, axis=-1)
    best = np.argmin(np.round(norm, 10), axis=1)
    out = cand[np.arange(len(q)), best]
    return q - np.rint(q - out)  # exact: q minus an integer vector


_SHIFTS = np.array(list(itertools.product(range(-2, 2), repeat=3)), dtype=np.float64)


@jax.jit
def _candidate_ties(frac, rec_t, shifts, tol):
    """For every q (nq, 3) the candidates frac + shift (ns shifts): (tie (nq, ns) bool: |.| within tol of the
    shortest, count (nq,) of ties, first (nq,) index of the shortest)."""
    norm = jnp.linalg.norm((frac[:, None, :] + shifts[None, :, :]) @ rec_t, axis=-1)
    tie = norm <= jnp.min(norm, axis=1, keepdims=True) + tol
    return tie, jnp.sum(tie, axis=1), jnp.argmax(tie, axis=1)


def bz_representatives(q_red, cell, *, tol: float = 1e-9):
    """All shortest representatives of each q (ties on the zone boundary included).

    Returns (reps (m, 3) reduced, owner (m,) index of the input q each representative belongs to, ascending)."""
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    base = np.floor(q + 1e-12)
    rec_t = np.linalg.inv(np.asarray(cell)).T
    nb = pad_bucket(len(q))
    frac = np.zeros((nb, 3))
    frac[:len(q)] = q - base
    tie, count, first = _candidate_ties(jnp.asarray(frac), jnp.asarray(rec_t), jnp.asarray(_SHIFTS), tol)
    count = np.asarray(count)[:len(q)]
    if np.all(count == 1):  # no q on a zone boundary: one representative each (no search over the tie table)
        owner, k = np.arange(len(q)), np.asarray(first)[:len(q)]
    else:
        owner, k = np.nonzero(np.asarray(tie)[:len(q)])
    reps = (q - base)[owner] + _SHIFTS[k]
    reps = q[owner] - np.rint(q[owner] - reps)
    return reps, owner


def owner_mean(values, owner) -> np.ndarray:
    """Mean over each input q's representatives: values (m, ...) per representative, owner (m,) ascending from
    :func:`bz_representatives` (every q owns at least one) → (nq, ...)."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    counts = np.diff(np.r_[starts, len(owner)])
    out = np.add.reduceat(values, starts, axis=0)
    return out / counts.reshape((-1,) + (1,) * (out.ndim - 1))


#: q lists are padded by the one policy of :mod:`phonjax.buckets` (as C(q)'s).
pad_bucket = q_bucket


@dataclass(frozen=True, eq=False)
class EwaldParameters:
    """Ewald split parameters.

    lam: Λ in phonopy's convention (1/Å, no 2π; the Gaussian is exp(−K·ε·K/4Λ²) with K without 2π).
    g_vectors: (nG, 3) Cartesian reciprocal-lattice vectors (1/Å, no 2π) in the reciprocal sum.
    r_vectors: (nR, 3) Cartesian lattice vectors (Å) in the real-space sum (empty: reciprocal only).
    tolerance: the truncation target (relative size of the first omitted terms).
    """

    lam: float
    g_vectors: np.ndarray
    r_vectors: np.ndarray
    tolerance: float
    with_real_space: bool

    @property
    def g_cutoff(self) -> float:
        return float(np.linalg.norm(self.g_vectors, axis=1).max()) if len(self.g_vectors) else 0.0


def _lattice_points_in_sphere(basis: np.ndarray, radius: float) -> np.ndarray:
    """Integer combinations n @ basis (rows) with |n @ basis| <= radius, (m, 3) Cartesian, 0 first."""
    inv = np.linalg.inv(basis)
    # |n_k| <= radius · |column k of inv(basis)| bounds the coefficients
    nmax = np.ceil(radius * np.linalg.norm(inv, axis=0)).astype(int) + 1
    grids = [np.arange(-m, m + 1) for m in nmax]
    n = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3)
    v = n @ basis
    r = np.linalg.norm(v, axis=1)
    keep = r <= radius
    v, r = v[keep], r[keep]
    return v[np.argsort(r, kind="stable")]


def default_lambda(crystal: Crystal) -> float:
    """A balanced Λ (phonopy convention) for the full Ewald sum: Λ_G = 2πΛ = √π / V^{1/3}."""
    return math.sqrt(math.pi) / crystal.volume ** (1.0 / 3.0) / (2 * math.pi)


def ewald_parameters(crystal: Crystal, born: Born, *, lam: float | None = None, tolerance: float = 1e-12,
                     with_real_space: bool = True) -> EwaldParameters:
    """Cutoffs from Λ and a tolerance.

    Reciprocal: keep |G| < G_max with exp(−ε_min G_max²/4Λ²) = tolerance (plus the |q| ≤ half-BZ margin).
    Real space: keep lattice vectors with |R| ≤ r_max + max|τ_j − τ_i|, where erfc(y_max) ≈ tolerance,
    y_max = Λ_G D_max, D_max = r_max/√ε_max.
    """
    if lam is None:
        lam = default_lambda(crystal)
    if not (lam > 0):
        raise ValueError(f"Ewald Λ must be positive, got {lam}")
    if not (0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    w = np.linalg.eigvalsh(born.epsilon)
    rec = np.linalg.inv(crystal.cell).T  # rows b_j (no 2π)
    ln = math.log(1.0 / tolerance)
    gmax = 2 * lam * math.sqrt(ln / w.min())
    qmax = 0.5 * np.linalg.norm(rec, axis=1).sum()  # |q| of any first-BZ point is below this
    g = _lattice_points_in_sphere(rec, gmax + qmax)
    if with_real_space:
        lam_g = 2 * math.pi * lam
        y_max = math.sqrt(ln) + 1.0
        r_max = y_max * math.sqrt(w.max()) / lam_g
        span = np.linalg.norm(crystal.positions[:, None, :] - crystal.positions[None, :, :], axis=-1).max()
        r = _lattice_points_in_sphere(crystal.cell, r_max + span)
    else:
        r = np.zeros((0, 3))
    return EwaldParameters(float(lam), g, r, float(tolerance), bool(with_real_space))


def phonopy_recip_parameters(crystal: Crystal, born: Born, *, num_g_points: int = 300, g_cutoff: float | None = None,
                             lam: float | None = None) -> EwaldParameters:
    """phonopy's ``DynamicalMatrixGL`` defaults (Eq. 13, reciprocal only).

    G_cut = (3·num_G/(4πV))^{1/3}, the G list = all |G| < G_cut, Λ = √(G_cut²·tr(ε)/3 / (4 ln 10¹⁰)) so the
    Gaussian is 1e−10 at the cutoff.
    """
    if g_cutoff is None:
        g_cutoff = (3 * num_g_points / (4 * np.pi) / crystal.volume) ** (1.0 / 3)
    rec = np.linalg.inv(crystal.cell).T
    g = _lattice_points_in_sphere(rec, g_cutoff * (1 - 1e-14))
    g = g[np.linalg.norm(g, axis=1) < g_cutoff]
    if lam is None:
        geg = g_cutoff ** 2 * np.trace(born.epsilon) / 3
        lam = math.sqrt(-geg / 4 / math.log(1e-10))
    if not (lam > 0):
        raise ValueError(f"Ewald Λ must be positive, got {lam}")
    return EwaldParameters(float(lam), g, np.zeros((0, 3)), 1e-10, False)


# ---------------------------------------------------------------------------------------------------------
# jit kernels
# ---------------------------------------------------------------------------------------------------------
@partial(jax.jit, static_argnames=("shortest",))
def _cdd_batch(tabs, rec_t, pref, lam, real, diag, q_red, shortest: bool):
    """(C_dd (nq, n, 3, n, 3), min_G |q+G|² (nq,)) for reduced q (nq, 3): pref × reciprocal sum (+ real-space
    sum when ``real`` = (dfrac, P)) + δ_ij diag[i] (−Σ_k C(0)_ik, or the limiting term), without the
    non-analytic term at q = 0 (added on the host). shortest: every q is its own shortest representative
    (:func:`bz_representatives`; the reciprocal sum then skips its |q + G| table). Module level: one
    compilation per shape for every crystal and Born data."""
    r, kmin = recip_sum(tabs, q_red @ rec_t, lam, Q_ZERO_TOL, shortest)
    c = pref * r
    if real is not None:
        c = c + jax.vmap(_real_one, in_axes=(0, None, None))(q_red, *real)
    n = diag.shape[0]
    return c + jnp.einsum("ij,iab->iajb", jnp.eye(n), diag)[None], kmin


def _real_one(q_red, dfrac, P):
    """Σ_R P[R,i,j] e^{2πi q·d}, d in primitive fractional coordinates. (n, 3, n, 3) complex."""
    ph = jnp.exp(2j * jnp.pi * jnp.einsum("rijk,k->rij", dfrac, q_red))
    return jnp.einsum("rij,rijab->iajb", ph, P)


def _h_tensor(d: np.ndarray, eps: np.ndarray, lam_g: float) -> np.ndarray:
    """−Λ_G³ H(Λ_G Δ, Λ_G D)/√det ε for displacement vectors d (..., 3) Å, zero at d = 0. (..., 3, 3).
    Host (NumPy/SciPy) precomputation: q-independent."""
    from scipy.special import erfc as _erfc

    d = np.asarray(d, dtype=np.float64)
    einv = np.linalg.inv(eps)
    delta = d @ einv.T
    D = np.sqrt(np.maximum(np.einsum("...a,...a->...", d, delta), 0.0))
    zero = D < 1e-10
    y = lam_g * np.where(zero, 1.0, D)
    x = lam_g * delta
    ey = np.exp(-y ** 2)
    ec = _erfc(y)
    A = (3 * ec / y ** 3 + 2 / np.sqrt(np.pi) * ey * (3 / y ** 2 + 2)) / y ** 2
    B = ec / y ** 3 + 2 / np.sqrt(np.pi) * ey / y ** 2
    H = x[..., :, None] * x[..., None, :] * A[..., None, None] - einv * B[..., None, None]
    H = np.where(zero[..., None, None], 0.0, H)
    return -(lam_g ** 3) * H / np.sqrt(np.linalg.det(eps))


@dataclass(frozen=True, eq=False)
class DipoleKernel:
    """A compiled C_dd(q) evaluator for one crystal, Born object and Ewald parameters.

    ``kernel(q_red, q_direction=None)`` → (nq, n, 3, n, 3) complex128 eV/Å². q-lists are padded to
    :func:`pad_bucket` sizes so repeated calls do not recompile.
    """

    crystal: Crystal
    born: Born
    params: EwaldParameters
    subtract_q0: bool
    _fn: object
    _q0: np.ndarray

    def __call__(self, q_red, q_direction=None, *, fold: bool = True) -> np.ndarray:
        """fold: evaluate at the shortest representatives q' = q − G0 (averaged over ties on the zone
        boundary) and apply the C-type phase exp(2πi G0·(τ_j − τ_i)), so the truncated G sum is periodic and
        conjugation-symmetric like the short-range part (exact commensurate invariance of ``gonze``)."""
        q_in = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
        qd = check_q_direction(q_direction)
        if fold:
            reps, owner = bz_representatives(q_in, self.crystal.cell)
        else:
            reps, owner = q_in, np.arange(len(q_in))
        raw = self._eval(reps, qd, shortest=fold)
        if not fold:
            return raw
        g0 = (q_in[owner] - reps) @ np.linalg.inv(self.crystal.cell).T  # Cartesian G0 (no 2π)
        if np.any(g0):  # some q were not their own shortest representatives
            tau = self.crystal.positions
            ph = np.exp(2j * np.pi * np.einsum("qc,ijc->qij", g0, tau[None, :, :] - tau[:, None, :]))
            raw = raw * ph[:, :, None, :, None]
        else:
            raw = np.array(raw)  # a fresh writable array either way (not a view of the device buffer)
        if len(owner) == len(q_in):  # no zone-boundary ties: one representative per q, in order
            return raw
        return owner_mean(raw, owner)

    def _eval(self, q, qd, *, shortest: bool) -> np.ndarray:
        nq = len(q)
        nb = pad_bucket(nq)
        qp = np.zeros((nb, 3))  # padding with Γ: its own shortest representative
        qp[:nq] = q
        return self._fn(qp, None if qd is None else qd / np.linalg.norm(qd), self._q0, shortest)[:nq]


def make_dipole_kernel(crystal, born: Born, params: EwaldParameters, *, subtract_q0: bool = True) -> DipoleKernel:
    """A C_dd evaluator for ``crystal`` and ``born``: q-independent tables built here, evaluated by the
    module-level jitted :func:`_cdd_batch` (one compilation per shape; see the module docstring for the terms)."""
    crystal = Crystal.coerce(crystal)
    n = crystal.n_atoms
    if born.n_atoms != n:
        raise BornError(f"Born charges for {born.n_atoms} atoms, crystal has {n}")
    pref = born.nac_prefactor(crystal.volume)
    lam = params.lam
    lam_g = 2 * math.pi * lam
    rec_t = np.linalg.inv(crystal.cell).T
    with_real = params.with_real_space and len(params.r_vectors) > 0
    if with_real:
        dcart = (params.r_vectors[:, None, None, :] + crystal.positions[None, None, :, :]
                 - crystal.positions[None, :, None, :])  # (nR, i, j, 3): R + τ_j − τ_i
        phi = np.asarray(_h_tensor(dcart, born.epsilon, lam_g))  # (nR, n, n, 3, 3)
        P = born.factor * np.einsum("ima,rijmn,jnb->rijab", born.zstar, phi, born.zstar)
        dfrac = jnp.asarray(dcart @ np.linalg.inv(crystal.cell))
        P = jnp.asarray(P)
        einv = np.linalg.inv(born.epsilon)
        lim = -born.factor * 4 * lam_g ** 3 / (3 * math.sqrt(math.pi)) / math.sqrt(np.linalg.det(born.epsilon))
        lim_blocks = lim * np.einsum("ima,mn,inb->iab", born.zstar, einv, born.zstar)
    else:
        dfrac = P = None
        lim_blocks = np.zeros((n, 3, 3))
    tables = recip_tables(params.g_vectors, crystal.positions, born.zstar, born.epsilon)
    tabs = tables.arrays()
    real = (dfrac, P) if with_real else None
    rec = jnp.asarray(rec_t)

    def fn(q_red, qdir, q0, shortest):
        """q_red (nb, 3) padded reduced q, qdir unit Cartesian (3,) or None → (nb, n, 3, n, 3) NumPy;
        shortest: see :func:`_cdd_batch`."""
        diag = -q0 if subtract_q0 else lim_blocks
        c, kmin = _cdd_batch(tabs, rec, pref, lam, real, jnp.asarray(diag), jnp.asarray(q_red), shortest)
        return add_na_terms(np.asarray(c), np.asarray(kmin), tables, np.asarray(q_red) @ rec_t, qdir, pref,
                            Q_ZERO_TOL)

    zero_q0 = np.zeros((n, 3, 3), dtype=np.complex128)
    if subtract_q0:
        c0 = fn(np.zeros((pad_bucket(1), 3)), None, zero_q0, True)[0]
        q0 = c0.sum(axis=2)  # Σ_k C(0)[i, a, k, b] → (i, a, b)
        q0 = 0.5 * (q0 + np.conj(np.swapaxes(q0, 1, 2)))  # Hermitian part, as phonopy
    else:
        q0 = zero_q0
    return DipoleKernel(crystal, born, params, subtract_q0, fn, q0)


def dipole_dipole(q_red, crystal, born: Born, *, lam: float | None = None, with_real_space: bool = True,
                  q_direction=None, tolerance: float = 1e-12, subtract_q0: bool = True) -> np.ndarray:
    """C_dd(q) (nq, n, 3, n, 3) complex128 eV/Å² at reduced q (see module docstring).

    with_real_space=True: full Ewald (Eqs. 6–9), Λ-independent, cutoffs from ``tolerance``; Λ defaults to a
    balanced value. with_real_space=False: reciprocal sum only (Eq. 13) with phonopy's default G list and Λ
    unless ``lam`` is given (then the G list follows from Λ and ``tolerance``).
    q_direction: Cartesian direction used for the G = 0 term at q = 0 (None: dropped).
    """
    crystal = Crystal.coerce(crystal)
    if with_real_space:
        params = ewald_parameters(crystal, born, lam=lam, tolerance=tolerance, with_real_space=True)
    elif lam is None:
        params = phonopy_recip_parameters(crystal, born)
    else:
        params = ewald_parameters(crystal, born, lam=lam, tolerance=tolerance, with_real_space=False)
    return make_dipole_kernel(crystal, born, params, subtract_q0=subtract_q0)(q_red, q_direction)
