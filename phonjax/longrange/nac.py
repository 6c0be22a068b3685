"""Non-analytic term at Γ (the seed's Eq. 5) and Wang's smeared variant.

    C_na(q̂)[i, a, j, b] = factor·4π/V · (q̂·Z_i)_a (q̂·Z_j)_b / (q̂·ε·q̂)        (eV/Å², not mass-weighted)

q̂ is a Cartesian direction (any length > 0, only the direction matters). (q̂·Z_i)_a = Σ_E q̂_E Z[i, E, a].
Wang et al. (J. Phys.: Condens. Matter 22, 202201 (2010)) add C_na(q̂ = q/|q|)/N to every supercell force
constant; after the Fourier transform that is C_na(q̂) times the phase sum of the supercell (see
:func:`phonjax.longrange.gonze.ws_phase_sum`).
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from phonjax.born import Born
from phonjax.longrange.ewald import check_q_direction

__all__ = ["na_term", "na_term_jax"]


def na_term_jax(qhat, zstar, epsilon, prefactor):
    """jit-friendly C_na for one direction qhat (3,) → (n, 3, n, 3) float. qhat must be non-zero."""
    qz = jnp.einsum("e,iea->ia", qhat, zstar)
    return prefactor * jnp.einsum("ia,jb->iajb", qz, qz) / (qhat @ epsilon @ qhat)


def na_term(q_direction, born: Born, volume: float) -> np.ndarray:
    """C_na(q̂) (n, 3, n, 3) complex128 eV/Å² for a Cartesian direction (zero length → QDirectionError)."""
    d = check_q_direction(q_direction)
    if d is None:
        raise ValueError("na_term needs a q direction")
    d = d / np.linalg.norm(d)
    return np.asarray(na_term_jax(jnp.asarray(d), jnp.asarray(born.zstar), jnp.asarray(born.epsilon),
                                  born.nac_prefactor(volume))).astype(np.complex128)
