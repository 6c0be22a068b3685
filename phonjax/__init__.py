"""phonjax: phonon dispersions from NequIP-family potentials in JAX.

Data flow (one module per step): structure → graph → models (a family's energy, e.g. models/nequip) →
force_constants (→ the ForceConstants record of fc_record, with its provenance) → fourier (C(q)) → longrange
(LongRange spec → auto policy → a Correction from the registry of builders) → dynmat (the one phonon engine:
C(q) + Correction, ASR, D(q), eigh) → bands → plot; files in and out through io/ (structure, phonopy,
band_yaml, born, qe, outputs).

Importing phonjax enables JAX's 64-bit mode (``jax_enable_x64``): force constants, Ewald sums and
eigenproblems are computed in float64. Network forward passes use the dtype their model config names
(float32 or float64) explicitly, so enabling x64 does not change a float32 model's numerics.
"""
import jax as _jax

_jax.config.update("jax_enable_x64", True)

from phonjax.structure import Crystal, Supercell, make_supercell, commensurate_qpoints  # noqa: E402
from phonjax.models import load_model  # noqa: E402
from phonjax.models.nequip.model import Model, ModelConfig  # noqa: E402
from phonjax.calculator import Calculator  # noqa: E402
from phonjax.force_constants import ForceConstants, force_constants, force_constants_batch  # noqa: E402
from phonjax.io.phonopy import from_phonopy, to_phonopy  # noqa: E402
from phonjax.bands import BandStructure, band_path  # noqa: E402
from phonjax.born import Born  # noqa: E402
from phonjax.io.born import read_born  # noqa: E402
from phonjax.longrange import LongRange, make_correction, dipole_dipole, lambda_scan  # noqa: E402
from phonjax.predict import predict, bands_from_phonopy  # noqa: E402
from phonjax.predict_many import predict_many  # noqa: E402
from phonjax.defaults import default_model  # noqa: E402
from phonjax.compile_cache import enable_compile_cache  # noqa: E402

__all__ = [
    "Crystal", "Supercell", "make_supercell", "commensurate_qpoints",
    "Model", "ModelConfig", "load_model", "Calculator", "default_model",
    "ForceConstants", "force_constants", "force_constants_batch",
    "from_phonopy", "to_phonopy", "BandStructure", "band_path",
    "Born", "read_born", "LongRange", "make_correction", "dipole_dipole", "lambda_scan",
    "predict", "predict_many", "bands_from_phonopy", "enable_compile_cache",
]
