"""Long range as one value: :class:`LongRange` (mode, Born data, Ewald Λ, leak region, LO projection, direction
at Γ), built once (CLI, :func:`phonjax.predict.predict`) and passed down; :meth:`LongRange.correction` turns it
into the prebuilt :class:`~phonjax.longrange.correction.Correction` the phonon engine takes
(``dynmat.phonons(fc, q, correction)``), so an expensive correction (gonze's subtraction, recip-auto's fit) is
made once per force constants and kept by the caller, not cached on them.

q_direction: the direction of approach to Γ for the non-analytic term, in reduced coordinates of the reciprocal
lattice — the basis of q itself, phonopy's convention (``DynamicalMatrixNAC.run(q, q_direction)``); the engine
converts it to Cartesian, q̂_cart = q_direction @ inv(cell).T. A zero vector is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from phonjax.longrange.correction import Correction, LongRangeModeError
from phonjax.longrange.policy import resolve_mode
from phonjax.longrange.strategies import make_correction, modes

__all__ = ["LongRange", "check_direction"]


def check_direction(q_direction) -> tuple[float, float, float] | None:
    """None or a finite non-zero (3,) direction as a tuple; :class:`LongRangeModeError` (a ValueError) else."""
    if q_direction is None:
        return None
    d = np.asarray(q_direction, dtype=np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)):
        raise LongRangeModeError(f"q_direction must be 3 finite numbers, got {q_direction!r}")
    if not np.any(d != 0):
        raise LongRangeModeError("q_direction must not be the zero vector (it is the direction of approach to Γ, "
                                 "in reduced coordinates of the reciprocal lattice)")
    return tuple(float(x) for x in d)


@dataclass(frozen=True, eq=False)
class LongRange:
    """The long-range treatment of a phonon calculation.

    mode: "auto" (:mod:`phonjax.longrange.policy`) or a registered mode (:func:`~phonjax.longrange.strategies.
    modes`).  born: :class:`~phonjax.born.Born` or None (then the force constants' own).  ewald_lambda: Λ
    (phonopy's convention, 1/Å) or None.  leak_region: "sphere:R" / "box:N N N" (ewald-leak).  lo_projection:
    act on polar optical modes only.  q_direction: (3,) reduced direction of approach to Γ, or None (no
    non-analytic term at Γ, TO = LO as phonopy without a direction).
    """

    mode: str = "auto"
    born: object = None
    ewald_lambda: float | None = None
    leak_region: str | None = None
    lo_projection: bool = False
    q_direction: tuple[float, float, float] | None = None

    def __post_init__(self):
        if self.mode != "auto" and self.mode not in modes():
            raise LongRangeModeError(f"unknown long-range mode {self.mode!r}; "
                                     f"choose one of auto, {', '.join(modes())}")
        object.__setattr__(self, "q_direction", check_direction(self.q_direction))
        object.__setattr__(self, "lo_projection", bool(self.lo_projection))

    def resolved(self, fc) -> "LongRange":
        """This spec for force constants ``fc``: born defaulted to ``fc.born``, ``auto`` resolved from
        ``fc.provenance``."""
        born = fc.born if self.born is None else self.born
        return replace(self, mode=resolve_mode(self.mode, fc.provenance, born), born=born)

    def correction(self, fc) -> Correction | None:
        """The prebuilt correction for ``fc`` (None for mode "none")."""
        r = self.resolved(fc)
        if r.mode == "none":
            return None
        return make_correction(r.mode, r.born, fc.supercell, fc.fc, ewald_lambda=r.ewald_lambda,
                               leak_region=r.leak_region, lo_projection=r.lo_projection)
