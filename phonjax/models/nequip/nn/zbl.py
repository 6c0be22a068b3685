"""nequip's ZBL pair term (LAMMPS pair_zbl constants), per centre atom, in float64.

E_i = Σ_j ½·k_e·Z_i Z_j / r · φ(x) · u(r / r_max),  x = (Z_i^0.23 + Z_j^0.23) r / 0.46850,
φ(x) = 0.02817 e^(−0.20162x) + 0.28022 e^(−0.40290x) + 0.50986 e^(−0.94229x) + 0.18175 e^(−3.19980x),
u: polynomial cutoff with ZBL's own exponent p. r in Å, k_e = units.COULOMB_EV_A (e²/4πε0) eV·Å, energies eV.
"""
from __future__ import annotations

import jax.numpy as jnp

from phonjax.models.nequip.nn.radial import polynomial_cutoff

PZBL, A0 = 0.23, 0.46850
C = (0.02817, 0.28022, 0.50986, 0.18175)
D = (-0.20162, -0.40290, -0.94229, -3.19980)


def zbl_edge_energy(z_i, z_j, r, x_norm, p: float, coulomb: float, model_dtype):
    """Per-edge ZBL energy (E,) float64. z_i/z_j (E,) atomic numbers of centre/neighbour, r (E,) Å
    (float64), x_norm = r / r_max. ``model_dtype``: dtype of nequip's Z buffer and cutoff cast."""
    zi = z_i.astype(model_dtype)
    zj = z_j.astype(model_dtype)
    x = ((jnp.power(zi, PZBL) + jnp.power(zj, PZBL)).astype(jnp.float64) * r) / A0
    psi = C[0] * jnp.exp(D[0] * x) + C[1] * jnp.exp(D[1] * x) + C[2] * jnp.exp(D[2] * x) + C[3] * jnp.exp(D[3] * x)
    eng = (0.5 * coulomb) * ((zi * zj).astype(jnp.float64) / r) * psi
    cut = polynomial_cutoff(x_norm, p).astype(model_dtype).astype(jnp.float64)
    return eng * cut
