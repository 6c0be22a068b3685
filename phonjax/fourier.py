"""Real-space force constants → C(q) with Wigner–Seitz shortest images (seed Eq. 3).

Convention (phonopy's, full interatomic vector in the phase):

    C(q)[i, a, j, b] = Σ_{s: s2p[s] = j} Σ_{m ∈ WS(i, s)} (1/mult) fc[i, s, a, b] · exp(2πi q·(r_s + T_m − r_i))

q in reduced coordinates of the primitive reciprocal basis (no 2π), fractional vectors in the primitive basis.
WS(i, s): the supercell lattice translations T_m making |r_s + T_m − r_i| shortest (ties within ``tol`` Å, as
phonopy's ``symprec``), so that force constants of a finite supercell interpolate without artefacts.
C(q) is not mass-weighted (eV/Å²); arrays (nq, n, 3, n, 3) complex128.

The transform is one jitted kernel vmapped over q; q lists are padded to buckets (:func:`bucket`) so a list of
another length in the same bucket does not recompile, nor does a second structure with the same shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.buckets import Q_BUCKET_MAX_POW2, q_bucket
from phonjax.structure import Supercell

__all__ = ["WSImages", "ws_images", "bucket", "fourier_fc", "pad_q", "cq_kernel", "cq_chunk"]

#: q lists are padded by the one policy of :mod:`phonjax.buckets`.
bucket = q_bucket


def pad_q(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    nb = bucket(len(q))
    return np.concatenate([q, np.zeros((nb - len(q), 3))])


@dataclass(frozen=True, eq=False)
class WSImages:
    """Shortest images of every (home atom i, supercell atom s) pair.

    frac: (n, ns, m, 3) vectors r_s + T − r_i in primitive fractional coordinates (zero padded).
    weight: (n, ns, m) 1/multiplicity for real images, 0 for padding.  multiplicity: (n, ns) int.
    """

    frac: np.ndarray
    weight: np.ndarray
    multiplicity: np.ndarray


def _reduced_basis(L: np.ndarray) -> np.ndarray:
    try:
        from ase.geometry import minkowski_reduce
        R, _ = minkowski_reduce(L)
        return np.asarray(R)
    except Exception:  # pragma: no cover - fall back to the given basis with a wider search
        return L


def ws_images(supercell: Supercell, *, tol: float = 1e-5) -> WSImages:
    """Wigner–Seitz images (see module docstring); the search runs over −2…2 of a Minkowski-reduced basis of
    the supercell lattice, which contains every shortest vector."""
    prim, sc = supercell.primitive, supercell.crystal
    n = prim.n_atoms
    L = _reduced_basis(sc.cell)
    d = sc.positions[None, :, :] - prim.positions[:, None, :]  # (n, ns, 3)
    # wrap into the reduced cell first so that ±2 images suffice
    f = d @ np.linalg.inv(L)
    d = (f - np.round(f)) @ L
    T = np.array(list(itertools.product(range(-2, 3), repeat=3)), dtype=np.float64) @ L  # (125, 3)
    v = d[:, :, None, :] + T[None, None]  # (n, ns, 125, 3)
    r = np.linalg.norm(v, axis=-1)
    keep = r <= r.min(axis=-1, keepdims=True) + tol
    mult = keep.sum(-1)
    m = 1 << (int(mult.max()) - 1).bit_length()  # padded to a power of two: fewer distinct kernel shapes
    order = np.argsort(~keep, axis=-1, kind="stable")[..., :m]
    vec = np.take_along_axis(v, order[..., None], axis=2)
    k = np.take_along_axis(keep, order, axis=2)
    frac = np.where(k[..., None], vec @ np.linalg.inv(prim.cell), 0.0)
    return WSImages(frac, k / mult[..., None], mult)


#: bytes of phase factors one q-chunk of the C(q) kernel may hold (complex128)
CHUNK_BYTES = 256 * 2 ** 20


@partial(jax.jit, static_argnames=("chunk",))
def cq_kernel(fc_blocks, frac, weight, q, chunk: int):
    """fc_blocks (n, L, n, 3, 3) [i, cell, j]; frac/weight (n, L, n, m[, 3]); q (nq, 3) → (nq, n, 3, n, 3).
    q is processed in ``lax.map`` chunks of ``chunk`` vmapped points (bounded memory)."""
    def one(qv):
        ph = jnp.sum(weight * jnp.exp(2j * jnp.pi * (frac @ qv)), axis=-1)  # (n, L, n)
        return jnp.einsum("ilj,iljab->iajb", ph, fc_blocks)
    nq = q.shape[0]
    if chunk >= nq:
        return jax.vmap(one)(q)
    out = jax.lax.map(jax.vmap(one), q.reshape(nq // chunk, chunk, 3))
    return out.reshape((nq,) + out.shape[2:])


def cq_chunk(nb: int, n: int, L: int, m: int) -> int:
    per_q = n * L * n * m * 16 * 2
    c = max(1, CHUNK_BYTES // max(per_q, 1))
    c = 1 << (c.bit_length() - 1)  # power of two ≤ budget, divides the bucket sizes
    return int(min(nb, c, Q_BUCKET_MAX_POW2))  # buckets are powers of two ≤ 4096 or multiples of 4096


def fourier_fc(fc, supercell: Supercell, qpoints, *, images: WSImages | None = None) -> np.ndarray:
    """C(q) (nq, n, 3, n, 3) complex128 eV/Å² of force constants fc (n, ns, 3, 3) at reduced ``qpoints``."""
    n, L = supercell.primitive.n_atoms, supercell.n_cells
    fc = np.asarray(fc, dtype=np.float64)
    if fc.shape != (n, n * L, 3, 3):
        raise ValueError(f"fc has shape {fc.shape}, expected {(n, n * L, 3, 3)}")
    q = np.asarray(qpoints, dtype=np.float64).reshape(-1, 3)
    if not np.all(np.isfinite(q)):
        raise ValueError("q-points contain non-finite values")
    im = ws_images(supercell) if images is None else images
    m = im.frac.shape[2]
    # supercell atoms are cell-major: s = l * n + j
    blocks = fc.reshape(n, L, n, 3, 3)
    frac = im.frac.reshape(n, L, n, m, 3)
    w = im.weight.reshape(n, L, n, m)
    qp = pad_q(q)
    out = cq_kernel(jnp.asarray(blocks), jnp.asarray(frac), jnp.asarray(w), jnp.asarray(qp),
                     cq_chunk(len(qp), n, L, m))
    return np.asarray(out)[:len(q)]
