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
non-analytic term (q̂·Z_i)_a (q̂·Z_j)_b P_gij / (q̂·ε·q̂). No prefactor (factor·4π/V) is applied here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["RecipTables", "recip_tables", "recip_sum", "RECIP_CHUNK"]

#: q-points per step of the reciprocal sum (bounds the (chunk × nG) weight matrix).
RECIP_CHUNK = 4096


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


@partial(jax.jit, static_argnames=("zero_tol",))
def _recip_block(tabs, q_cart, qdir, has_dir, lam, zero_tol: float):
    g, geg, eg, gg, table, phase, z, eps = tabs
    n = z.shape[0]
    kk = gg[None, :] + 2 * q_cart @ g.T + jnp.sum(q_cart * q_cart, axis=1)[:, None]  # |K|² (nq, nG)
    keps = geg[None, :] + 2 * q_cart @ eg.T + jnp.einsum("qa,ab,qb->q", q_cart, eps, q_cart)[:, None]
    small = kk < zero_tol ** 2
    safe = jnp.where(small, 1.0, keps)
    w = jnp.where(small, 0.0, jnp.exp(-safe / (4 * lam ** 2)) / safe)
    qz = jnp.einsum("qm,ima->qia", q_cart, z)
    out = _assemble(w @ table, qz, n)
    # the q = 0 term with a direction: the non-analytic term in place of the dropped one
    gstar = jnp.argmin(kk, axis=1)
    hit = small[jnp.arange(len(q_cart)), gstar] & has_dir
    dz = jnp.einsum("m,ima->ia", qdir, z)
    na = dz[:, :, None, None] * dz[None, None, :, :] / jnp.where(has_dir, qdir @ eps @ qdir, 1.0)
    return out + jnp.where(hit[:, None, None, None, None],
                           phase[gstar][:, :, None, :, None] * na[None], 0.0)


def recip_sum(tabs: tuple, q_cart, qdir, has_dir, lam, zero_tol: float):
    """R(q) (nq, n, 3, n, 3) complex (no prefactor) for Cartesian q (nq, 3) (traceable); tabs:
    :meth:`RecipTables.arrays`; qdir (3,) unit Cartesian direction used where has_dir; processed in chunks of
    :data:`RECIP_CHUNK` q-points."""
    nq = q_cart.shape[0]
    if nq <= RECIP_CHUNK or nq % RECIP_CHUNK:
        return _recip_block(tabs, q_cart, qdir, has_dir, lam, zero_tol)
    out = jax.lax.map(lambda qc: _recip_block(tabs, qc, qdir, has_dir, lam, zero_tol),
                      q_cart.reshape(nq // RECIP_CHUNK, RECIP_CHUNK, 3))
    return out.reshape((nq,) + out.shape[2:])
