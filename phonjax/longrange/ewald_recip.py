"""The reciprocal-space Ewald sum of C_dd(q) (Eq. 6 of :mod:`phonjax.longrange.ewald`) as one matrix product.

For K = G + q (Cartesian, 1/Å, no 2π), Z_i the Born charges and P_gij = exp(2πi G·(τ_i − τ_j)):

    R_ij(q)[a, b] = Σ_G w_G(q) (K·Z_i)_a (K·Z_j)_b P_gij,   w_G(q) = exp(−K·ε·K / 4Λ²) / (K·ε·K).

(K·Z_i) = (G·Z_i) + (q·Z_i) is linear in q, so the product expands into four q-independent tables per G,

    T0 = P_gij (G·Z_i)_a (G·Z_j)_b,  T1 = P_gij (G·Z_i)_a,  T2 = P_gij (G·Z_j)_b,  T3 = P_gij,

and R(q) = w(q)·T0 + [w(q)·T1] (q·Z_j)_b + (q·Z_i)_a [w(q)·T2] + (q·Z_i)_a (q·Z_j)_b [w(q)·T3]: one real matrix
product (nq × nG)·(nG × 32n²) for all q, instead of nG outer products per q. K·ε·K = G·ε·G + 2 q·(εG) + q·ε·q is
expanded the same way (exact in exact arithmetic; in float64 its absolute error is ~1e-16 |G|², far below
the |K| < :data:`~phonjax.longrange.ewald.Q_ZERO_TOL` threshold that drops or replaces a term).

Terms with |K| below the threshold are dropped; with a direction q̂ (Cartesian, unit) they are replaced by the
non-analytic term (q̂·Z_i)_a (q̂·Z_j)_b P_gij / (q̂·ε·q̂) — added on the host for the few q-points that have such a
term (:func:`recip_sum`), so that the batched kernel stays a plain weighted product. No prefactor (factor·4π/V)
is applied here.
"""
from __future__ import annotations

from dataclasses import dataclass
import jax
import jax.numpy as jnp
import numpy as np

from phonjax.buckets import q_chunk

__all__ = ["RecipTables", "recip_tables", "recip_sum", "recip_chunk", "add_na_terms", "RECIP_BYTES"]

#: bytes of the (q × G) weight matrix one step of the reciprocal sum may hold; more q run in ``lax.map`` steps.
RECIP_BYTES = 256 * 2 ** 20


@dataclass(frozen=True, eq=False)
class RecipTables:
    """q-independent arrays of the reciprocal sum for one crystal, Born data and G list.

    g (nG, 3) Cartesian G (1/Å, no 2π); geg (nG,) G·ε·G; eg (nG, 3) ε·G; gg (nG,) |G|²; table (nG, 32n²) real:
    [Re, Im] of [T0 (n,3,n,3), T1 (n,3,n), T2 (n,n,3), T3 (n,n)] flattened; phase (nG, n, n) complex P_gij;
    z (n, 3, 3) Born charges Z[i, m, a]; eps (3, 3)."""

    g: np.ndarray
    geg: np.ndarray
    eg: np.ndarray
    gg: np.ndarray
    table: np.ndarray
    phase: np.ndarray
    z: np.ndarray
    eps: np.ndarray

    def arrays(self) -> tuple:
        """The tables as a tuple of jax arrays (the argument of :func:`recip_sum`)."""
        return tuple(jnp.asarray(a) for a in (self.g, self.geg, self.eg, self.gg, self.table, self.phase, self.z,
                                              self.eps))


def recip_tables(g, tau, zstar, eps) -> RecipTables:
    """Tables for G vectors g (nG, 3), positions tau (n, 3) Å, Born charges (n, 3, 3), ε∞ (3, 3)."""
    g = np.asarray(g, dtype=np.float64).reshape(-1, 3)
    z, eps = np.asarray(zstar, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    P = np.exp(2j * np.pi * np.einsum("gc,ijc->gij", g, tau[:, None, :] - tau[None, :, :]))  # (nG, n, n)
    gz = np.einsum("gm,ima->gia", g, z)  # (nG, n, 3)
    t0 = np.einsum("gij,gia,gjb->giajb", P, gz, gz)
    t1 = np.einsum("gij,gia->giaj", P, gz)
    t2 = np.einsum("gij,gjb->gijb", P, gz)
    parts = [t.reshape(len(g), -1) for t in (t0, t1, t2, P)]
    c = np.concatenate(parts, axis=1)
    return RecipTables(g, np.einsum("ga,ab,gb->g", g, eps, g), g @ eps.T, np.einsum("ga,ga->g", g, g),
                       np.concatenate([c.real, c.imag], axis=1), P, z, eps)


def _assemble(m, qz, n):
    """(nq, n, 3, n, 3) complex from the table product m (nq, 32n²) and q·Z (nq, n, 3)."""
    half = m.shape[1] // 2
    c = m[:, :half] + 1j * m[:, half:]
    k0, k1 = 9 * n * n, 12 * n * n
    t0 = c[:, :k0].reshape(-1, n, 3, n, 3)
    t1 = c[:, k0:k1].reshape(-1, n, 3, n)
    t2 = c[:, k1:k1 + 3 * n * n].reshape(-1, n, n, 3)
    t3 = c[:, k1 + 3 * n * n:].reshape(-1, n, n)
    return (t0 + t1[..., None] * qz[:, None, None, :, :] + qz[:, :, :, None, None] * t2[:, :, None, :, :]
            + qz[:, :, :, None, None] * qz[:, None, None, :, :] * t3[:, :, None, :, None])


def _weights(g, geg, eg, gg, eps, q_cart, lam, zero_tol, shortest: bool):
    """(w (nq, nG), min_G |K|² (nq,)): the Gaussian-screened 1/(K·ε·K) of every term, 0 where |K| < zero_tol.
    shortest: every q is its own shortest representative (|q + G| ≥ |q| for all G), so only the G = 0 term can
    be that small, and only where |q| is: the (nq, nG) table of |K|² is not needed."""
    keps = geg[None, :] + 2 * q_cart @ eg.T + jnp.einsum("qa,ab,qb->q", q_cart, eps, q_cart)[:, None]
    if shortest:
        kmin = jnp.sum(q_cart * q_cart, axis=1)
        small = (gg[None, :] == 0) & (kmin[:, None] < zero_tol ** 2)
    else:
        kk = gg[None, :] + 2 * q_cart @ g.T + jnp.sum(q_cart * q_cart, axis=1)[:, None]  # |K|² (nq, nG)
        small, kmin = kk < zero_tol ** 2, jnp.min(kk, axis=1)
    safe = jnp.where(small, 1.0, keps)
    return jnp.where(small, 0.0, jnp.exp(-safe / (4 * lam ** 2)) / safe), kmin


def _block(tabs, q_cart, lam, zero_tol, shortest):
    g, geg, eg, gg, table, phase, z, eps = tabs
    w, kmin = _weights(g, geg, eg, gg, eps, q_cart, lam, zero_tol, shortest)
    qz = jnp.einsum("qm,ima->qia", q_cart, z)
    return _assemble(w @ table, qz, z.shape[0]), kmin


def _na_terms(tables: RecipTables, q_cart: np.ndarray, qdir: np.ndarray, zero_tol: float) -> np.ndarray:
    """(nq, n, 3, n, 3): the non-analytic term of direction qdir (unit, Cartesian) in place of each q's dropped
    |K| < zero_tol term (host; called for the few q that have one)."""
    kk = np.sum((tables.g[None, :, :] + q_cart[:, None, :]) ** 2, axis=-1)
    gstar = np.argmin(kk, axis=1)
    dz = np.einsum("m,ima->ia", qdir, tables.z)
    na = dz[:, :, None, None] * dz[None, None, :, :] / (qdir @ tables.eps @ qdir)
    out = tables.phase[gstar][:, :, None, :, None] * na[None]
    return np.where((kk[np.arange(len(q_cart)), gstar] < zero_tol ** 2)[:, None, None, None, None], out, 0.0)


def recip_chunk(nq: int, n_g: int) -> int:
    """q-points per step for nq (a :mod:`phonjax.buckets` size) and n_g G vectors: all when the weight matrix
    fits :data:`RECIP_BYTES`, else the largest power of two that fits and divides nq (at most 4096)."""
    if nq * n_g * 16 <= RECIP_BYTES:
        return int(nq)
    return q_chunk(nq, min(RECIP_BYTES // (16 * max(n_g, 1)), 4096))


def recip_sum(tabs: tuple, q_cart, lam, zero_tol: float, shortest: bool = False):
    """(R(q) (nq, n, 3, n, 3) complex without prefactor and without the non-analytic term, min_G |K|² (nq,))
    for Cartesian q (nq, 3) (traceable); tabs: :meth:`RecipTables.arrays`; shortest (static): every q is its
    own shortest representative (see :func:`_weights`)."""
    nq, n_g = q_cart.shape[0], tabs[0].shape[0]
    c = recip_chunk(nq, n_g)
    if c >= nq or nq % c:
        return _block(tabs, q_cart, lam, zero_tol, shortest)
    out, kmin = jax.lax.map(lambda qc: _block(tabs, qc, lam, zero_tol, shortest), q_cart.reshape(nq // c, c, 3))
    return out.reshape((nq,) + out.shape[2:]), kmin.reshape(nq)


def add_na_terms(c: np.ndarray, kmin: np.ndarray, tables: RecipTables, q_cart: np.ndarray, qdir, pref: float,
                 zero_tol: float) -> np.ndarray:
    """c (nq, n, 3, n, 3) + pref × the non-analytic terms of direction qdir (None: none) at the q whose
    min |K|² is below zero_tol²."""
    if qdir is None:
        return c
    k = np.flatnonzero(np.asarray(kmin) < zero_tol ** 2)
    if len(k):
        c = np.array(c)
        c[k] += pref * _na_terms(tables, np.asarray(q_cart)[k], np.asarray(qdir, dtype=np.float64), zero_tol)
    return c
