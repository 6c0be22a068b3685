"""Long-range dipole–dipole physics for polar crystals.

* :mod:`~phonjax.longrange.ewald`   — Ewald C_dd(q) (reciprocal, real-space, limiting terms, q = 0 subtraction)
* :mod:`~phonjax.longrange.nac`     — the non-analytic term at Γ (Eq. 5)
* :mod:`~phonjax.longrange.gonze`   — mixed-space subtraction on the force-constant supercell
* :mod:`~phonjax.longrange.leak`    — H_DD-Leak regions (sphere / box)
* :mod:`~phonjax.longrange.strategies` — the ``--lr`` modes as :class:`Correction` objects (default ``gonze``)
* :mod:`~phonjax.longrange.calibrate`  — Λ scans
* :mod:`~phonjax.longrange.range_matched` — Λ* fitted to force constants' own polar response (``recip-auto``)
"""
from phonjax.longrange.ewald import (EwaldParameters, DipoleKernel, QDirectionError, dipole_dipole,
                                     ewald_parameters, make_dipole_kernel, phonopy_recip_parameters)
from phonjax.longrange.nac import na_term
from phonjax.longrange.gonze import gonze_short_range_fc, supercell_dipole_fc
from phonjax.longrange.leak import LeakRegion, LeakRegionError, leak_fc, parse_leak_region
from phonjax.longrange.strategies import (DEFAULT_MODE, MODES, Correction, LongRangeModeError, make_correction)
from phonjax.longrange.calibrate import LambdaScan, lambda_scan
from phonjax.longrange.range_matched import LambdaFit, RangeMatchError, fit_model_lambda

__all__ = ["EwaldParameters", "DipoleKernel", "QDirectionError", "dipole_dipole", "ewald_parameters",
           "make_dipole_kernel", "phonopy_recip_parameters", "na_term", "gonze_short_range_fc",
           "supercell_dipole_fc", "LeakRegion", "LeakRegionError", "leak_fc", "parse_leak_region", "DEFAULT_MODE",
           "MODES", "Correction", "LongRangeModeError", "make_correction", "LambdaScan", "lambda_scan",
           "LambdaFit", "RangeMatchError", "fit_model_lambda"]
