"""phonjax: phonon dispersions from NequIP-family potentials in JAX.

Importing phonjax enables JAX's 64-bit mode (``jax_enable_x64``): force constants, Ewald sums and
eigenproblems are computed in float64. Network forward passes use the dtype their model config names
(float32 or float64) explicitly, so enabling x64 does not change a float32 model's numerics.
"""
import jax as _jax

_jax.config.update("jax_enable_x64", True)

from phonjax.structure import Crystal, Supercell, make_supercell, commensurate_qpoints  # noqa: E402

__all__ = ["Crystal", "Supercell", "make_supercell", "commensurate_qpoints"]
