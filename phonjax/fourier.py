"""Real-space force constants → C(q) with Wigner–Seitz shortest images (seed Eq. 3).

Convention (phonopy's, full interatomic vector in the phase):

    C(q)[i, a, j, b] = Σ_{s: s2p[s] = j} Σ_{m ∈ WS(i, s)} (1/mult) fc[i, s, a, b] · exp(2πi q·(r_s + T_m − r_i))

q in reduced coordinates of the primitive reciprocal basis (no 2π), fractional vectors in the primitive basis.
WS(i, s): the supercell lattice translations T_m making |r_s + T_m − r_i| shortest (ties within ``tol`` Å, as
phonopy's ``symprec``), so that force constants of a finite supercell interpolate without artefacts.
C(q) is not mass-weighted (eV/Å²); arrays (nq, n, 3, n, 3) complex128.

Evaluation: every image vector is an integer lattice vector R (primitive basis) plus τ_j − τ_i, so

    C(q)[i, a, j, b] = exp(2πi q·(τ_j − τ_i)) · Σ_R F[R, i, a, j, b] · exp(2πi q·R),

with F (nR, n, 3, n, 3) real = the image-weighted force constants gathered per R. R and −R are taken together,

    Σ_R F_R e^{iθ_R} = Σ_{R ∈ half} cos θ_R (F_R + F_−R) + i sin θ_R (F_R − F_−R),   θ_R = 2π q·R,

over the half of the lattice vectors whose first non-zero component is positive, plus R = 0 (whose sine is 0)
(:func:`lattice_blocks`): exact, and half the sines and cosines, which dominate the kernel. One jitted kernel
computes cos/sin(2π q·R) for a chunk of q and two real matrix products (q × R)·(R × 9n²): the per-image complex
exponentials and the (i, s, m) gather of a direct sum are gone. q lists are padded to buckets
(:func:`bucket`) and R lists to :func:`phonjax.buckets.capacity_bucket` sizes, so a list of another length in
the same bucket does not recompile, nor does a second structure with the same shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.buckets import Q_BUCKET_MAX_POW2, capacity_bucket, q_bucket, q_chunk
from phonjax.structure import Supercell

__all__ = ["WSImages", "ws_images", "bucket", "fourier_fc", "pad_q", "cq_kernel", "cq_chunk", "lattice_blocks",
           "padded_lattice"]

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
    lattice: (nR, 3) the distinct integer lattice vectors R = frac − (τ_j − τ_i) (primitive basis, float).
    index: (n, ns, m) int, the row of ``lattice`` of each image (0 for padding, whose weight is 0).
    dtau: (n, n, 3) τ_j − τ_i in primitive fractional coordinates.
    half: (nH, 3) one of each pair ±R of ``lattice`` (first non-zero component positive, or R = 0);
    half_row, half_sign: (nR,) every lattice[r] = half_sign[r] · half[half_row[r]] (see :func:`lattice_blocks`).
    """

    frac: np.ndarray
    weight: np.ndarray
    multiplicity: np.ndarray
    lattice: np.ndarray
    index: np.ndarray
    dtau: np.ndarray
    half: np.ndarray
    half_row: np.ndarray
    half_sign: np.ndarray


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
    tau = prim.positions @ np.linalg.inv(prim.cell)
    dtau = tau[None, :, :] - tau[:, None, :]  # (i, j, 3)
    R = np.rint(frac - dtau[:, supercell.s2p][:, :, None, :])
    R = np.where(k[..., None], R, 0.0)
    lattice, index = np.unique(R.reshape(-1, 3), axis=0, return_inverse=True)
    return WSImages(frac, k / mult[..., None], mult, lattice, index.reshape(k.shape), dtau,
                    *_half_lattice(lattice))


#: bytes of phase factors one q-chunk of the C(q) kernel may hold (cos and sin, float64)
CHUNK_BYTES = 256 * 2 ** 20


def _half_lattice(lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(half (nH, 3), row (nR,), sign (nR,)): every R = sign · half[row], with half[k]'s first non-zero
    component positive (or half[k] = 0, sign +1)."""
    lat = np.asarray(lattice, dtype=np.float64)
    nz = lat != 0
    first = np.where(nz.any(axis=1), lat[np.arange(len(lat)), np.argmax(nz, axis=1)], 1.0)
    sign = np.where(first < 0, -1.0, 1.0)
    half, row = np.unique(lat * sign[:, None], axis=0, return_inverse=True)
    return half, row.reshape(-1), sign


def lattice_blocks(fc, supercell: Supercell, images: WSImages) -> np.ndarray:
    """F (2, nH_pad, 9n²) float64: [F_R + F_−R, F_R − F_−R] for R in the half lattice of
    :func:`padded_lattice`, F_R = Σ over the images with lattice vector R of weight · fc[i, s] placed at
    [(i, a, s2p(s), b)]; zero rows pad nH to a :func:`capacity_bucket` size."""
    n = supercell.primitive.n_atoms
    fc = np.asarray(fc, dtype=np.float64)
    half, row, sign = images.half, images.half_row, images.half_sign
    nr = capacity_bucket(len(half))
    F = np.zeros((2, nr, n, 3, n, 3))
    i, s, _ = np.nonzero(images.weight)
    r = images.index[images.weight > 0]
    w = images.weight[images.weight > 0]
    blocks = w[:, None, None] * fc[i, s]
    j = supercell.s2p[s]
    np.add.at(F[0], (row[r], i, slice(None), j, slice(None)), blocks)
    np.add.at(F[1], (row[r], i, slice(None), j, slice(None)), sign[r][:, None, None] * blocks)
    return F.reshape(2, nr, 9 * n * n)


def padded_lattice(images: WSImages) -> np.ndarray:
    """(nH_pad, 3) the half lattice of :func:`lattice_blocks` (R and −R as one row), zero padded as its rows."""
    half = images.half
    L = np.zeros((capacity_bucket(len(half)), 3))
    L[:len(half)] = half
    return L


@partial(jax.jit, static_argnames=("chunk",))
def cq_kernel(F, lattice, dtau, q, chunk: int):
    """F (2, nH, 9n²) real and lattice (nH, 3) from :func:`lattice_blocks` / :func:`padded_lattice`, dtau
    (n, n, 3), q (nq, 3) → C(q) (nq, n, 3, n, 3) complex (see the module docstring). q is processed in
    ``lax.map`` chunks of ``chunk`` points (bounded memory)."""
    n = dtau.shape[0]

    def block(qc):
        x = (2 * jnp.pi) * (qc @ lattice.T)  # (c, nH)
        c = (jnp.cos(x) @ F[0] + 1j * (jnp.sin(x) @ F[1])).reshape(-1, n, 3, n, 3)
        ph = jnp.exp((2j * jnp.pi) * jnp.einsum("qc,ijc->qij", qc, dtau))
        return c * ph[:, :, None, :, None]
    nq = q.shape[0]
    if chunk >= nq:
        return block(q)
    out = jax.lax.map(block, q.reshape(nq // chunk, chunk, 3))
    return out.reshape((nq,) + out.shape[2:])


def cq_chunk(nb: int, n_lattice: int, n: int) -> int:
    """q-points per chunk of :func:`cq_kernel` for a bucket of nb q and n_lattice (padded) half-lattice rows."""
    per_q = 8 * (2 * n_lattice + 2 * 9 * n * n)
    if nb * per_q <= CHUNK_BYTES:  # all at once: a lax.map loop costs more than it saves when memory allows
        return int(nb)
    return q_chunk(nb, min(max(1, CHUNK_BYTES // max(per_q, 1)), Q_BUCKET_MAX_POW2))


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
    F = lattice_blocks(fc, supercell, im)
    qp = pad_q(q)
    out = cq_kernel(jnp.asarray(F), jnp.asarray(padded_lattice(im)), jnp.asarray(im.dtau), jnp.asarray(qp),
                    cq_chunk(len(qp), F.shape[1], n))
    return np.asarray(out)[:len(q)]
