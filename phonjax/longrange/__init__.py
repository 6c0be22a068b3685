"""Long-range dipole–dipole physics for polar crystals.

* :mod:`~phonjax.longrange.spec`       — :class:`LongRange`, the one value describing the long-range treatment
* :mod:`~phonjax.longrange.policy`     — what ``lr='auto'`` means, by the force constants' provenance
* :mod:`~phonjax.longrange.strategies` — the registry of ``--lr`` modes and :func:`make_correction`
* :mod:`~phonjax.longrange.correction` — :class:`Correction` (a mode bound to one supercell) and builder helpers
* :mod:`~phonjax.longrange.builders`   — one module per mode (none, na, wang, ewald/ewald-leak, recip,
  recip-auto, gonze)
* :mod:`~phonjax.longrange.ewald`      — Ewald C_dd(q) (reciprocal, real-space, limiting terms, q = 0 subtraction)
* :mod:`~phonjax.longrange.nac`        — the non-analytic term at Γ (Eq. 5)
* :mod:`~phonjax.longrange.gonze`      — mixed-space subtraction on the force-constant supercell
* :mod:`~phonjax.longrange.leak`       — H_DD-Leak regions (sphere / box)
* :mod:`~phonjax.longrange.calibrate`  — Λ scans
* :mod:`~phonjax.longrange.range_matched` — Λ* fitted to force constants' own polar response (``recip-auto``)
* :mod:`~phonjax.longrange.supercell`, :mod:`~phonjax.longrange.dipole_labels` — dipole energies/forces of
  supercells and dipole-subtracted training labels (short-range models)
"""
from phonjax.longrange.ewald import (EwaldParameters, DipoleKernel, QDirectionError, dipole_dipole,
                                     ewald_parameters, make_dipole_kernel, phonopy_recip_parameters)
from phonjax.longrange.nac import na_term
from phonjax.longrange.gonze import gonze_short_range_fc, supercell_dipole_fc
from phonjax.longrange.leak import LeakRegion, LeakRegionError, leak_fc, parse_leak_region
from phonjax.longrange.correction import BuildRequest, Correction, LongRangeModeError
from phonjax.longrange.strategies import MODES, make_correction, modes, register, unregister
from phonjax.longrange.policy import AUTO_MODES, PROVENANCES, auto_mode
from phonjax.longrange.spec import LongRange
from phonjax.longrange.calibrate import LambdaScan, lambda_scan
from phonjax.longrange.range_matched import LambdaFit, RangeMatchError, fit_model_lambda

__all__ = ["EwaldParameters", "DipoleKernel", "QDirectionError", "dipole_dipole", "ewald_parameters",
           "make_dipole_kernel", "phonopy_recip_parameters", "na_term", "gonze_short_range_fc",
           "supercell_dipole_fc", "LeakRegion", "LeakRegionError", "leak_fc", "parse_leak_region",
           "BuildRequest", "Correction", "LongRangeModeError", "MODES", "make_correction", "modes", "register",
           "unregister", "AUTO_MODES", "PROVENANCES", "auto_mode", "LongRange", "LambdaScan", "lambda_scan",
           "LambdaFit", "RangeMatchError", "fit_model_lambda"]
