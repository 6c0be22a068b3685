"""A long-range strategy bound to one supercell: :class:`Correction`, and what every builder shares.

A Correction holds the force constants the engine Fourier-transforms (``short_range_fc``) and a q-space term
that ``apply`` adds to C(q) (phonopy's C-type phase convention, eV/Å², not mass-weighted). Builders
(:mod:`phonjax.longrange.builders`) receive one :class:`BuildRequest` and return a Correction; the registry in
:mod:`phonjax.longrange.strategies` maps mode names to builders. At this level directions of approach to Γ are
Cartesian (as the Ewald kernel takes them); the public phonon API converts from reduced coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phonjax.born import Born
from phonjax.structure import Supercell
from phonjax.longrange.ewald import DipoleKernel, bz_representatives, check_q_direction, owner_mean

__all__ = ["Correction", "BuildRequest", "LongRangeModeError", "acoustic_projector", "projected", "kernel_term"]


class LongRangeModeError(ValueError):
    """Unknown ``lr`` mode or inconsistent options."""


@dataclass(frozen=True, eq=False)
class BuildRequest:
    """Everything a builder may use. born: Born data (None only for modes registered without it).
    supercell: the force-constant supercell.  fc: (n_prim, n_super, 3, 3) eV/Å².  ewald_lambda: user Λ
    (phonopy's convention) or None.  leak_region: ewald-leak region or None.  tolerance: Ewald truncation
    target.  lo_projection: act on polar optical modes only.  gonze_full_ewald / num_g_points: gonze options."""

    born: Born | None
    supercell: Supercell
    fc: np.ndarray
    ewald_lambda: float | None = None
    leak_region: object = None
    tolerance: float = 1e-12
    lo_projection: bool = False
    gonze_full_ewald: bool = False
    num_g_points: int = 300

    @property
    def primitive(self):
        return self.supercell.primitive

    def projector(self):
        """The LO projector Q (3n, 3n) when ``lo_projection``, else None."""
        return acoustic_projector(self.primitive.masses) if self.lo_projection else None

    def info(self, mode: str) -> dict:
        b = self.born
        return {"mode": mode, "lo_projection": bool(self.lo_projection),
                "factor": None if b is None else b.factor,
                "neutrality_correction": None if b is None else b.neutrality_correction}

    def correction(self, mode: str, term, *, short_range_fc=None, removed_fc=None, lam=None, info=None):
        """A Correction of this request (short_range_fc defaults to fc, removed_fc to zeros)."""
        fc = self.fc
        return Correction(mode, fc if short_range_fc is None else short_range_fc,
                          np.zeros_like(fc) if removed_fc is None else removed_fc, self.born, lam,
                          bool(self.lo_projection), self.info(mode) if info is None else info, term)


def acoustic_projector(masses) -> np.ndarray:
    """Q (3n, 3n): Q[ia, jb] = δ_ij δ_ab − m_i δ_ab / Σm (the LO projection, see
    :mod:`~phonjax.longrange.strategies`)."""
    m = np.asarray(masses, dtype=np.float64)
    n = len(m)
    Q = np.eye(3 * n) - np.kron(np.outer(m, np.ones(n)) / m.sum(), np.eye(3))
    return Q


@dataclass(frozen=True, eq=False)
class Correction:
    """A long-range strategy bound to one supercell and its force constants.

    mode: one of :data:`MODES`.  short_range_fc: (n_prim, n_super, 3, 3) eV/Å² for the Fourier transform.
    removed_fc: what was subtracted from fc (fc_dd for gonze, H_DD-Leak for ewald-leak, else zeros).
    lam: Λ used (phonopy convention, None where not applicable).  info: provenance dict.
    """

    mode: str
    short_range_fc: np.ndarray
    removed_fc: np.ndarray
    born: Born | None
    lam: float | None
    lo_projection: bool
    info: dict = field(default_factory=dict)
    _term: object = None  # callable (q_red (nq,3), q_dir | None) -> (nq, n, 3, n, 3)

    def long_range(self, q_red, q_direction=None) -> np.ndarray:
        """The term added to C(q): (nq, n, 3, n, 3) complex128 eV/Å²."""
        q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
        qd = check_q_direction(q_direction)
        n = self.short_range_fc.shape[0]
        if self._term is None:
            return np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
        return np.asarray(self._term(q, qd))

    def apply(self, cq, q_red, q_direction=None) -> np.ndarray:
        """C(q) of ``short_range_fc`` → total C(q). cq: (nq, n, 3, n, 3) complex; q_red (nq, 3) reduced;
        q_direction: Cartesian (3,) used at q = 0 (None: no non-analytic term, TO = LO as phonopy)."""
        cq = np.asarray(cq)
        q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
        n = self.short_range_fc.shape[0]
        if cq.shape != (len(q), n, 3, n, 3):
            raise ValueError(f"cq has shape {cq.shape}, expected {(len(q), n, 3, n, 3)}")
        if self._term is None:
            check_q_direction(q_direction)
            return cq
        return cq + self.long_range(q, q_direction)


def projected(term, Q, crystal):
    """q ↦ Q term(q) Qᵀ, made periodic in phonopy's C-type convention: the projector (uniform translations)
    refers to the shortest representative q' of q, so the projection is done there (averaged over zone-boundary
    ties) and carried to q with the phase exp(2πi G0·(τ_j − τ_i)), G0 = q − q'."""
    if Q is None:
        return term
    rec_t = np.linalg.inv(crystal.cell).T
    tau = crystal.positions

    def f(q, qd):
        q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
        reps, owner = bz_representatives(q, crystal.cell)
        c = np.asarray(term(reps, qd))
        nr, n = c.shape[0], c.shape[1]
        c = (Q @ c.reshape(nr, 3 * n, 3 * n) @ Q.T).reshape(c.shape)
        g0 = (q[owner] - reps) @ rec_t
        ph = np.exp(2j * np.pi * np.einsum("qc,ijc->qij", g0, tau[None, :, :] - tau[:, None, :]))
        c = c * ph[:, :, None, :, None]
        return owner_mean(c, owner)

    return f


def kernel_term(kernel: DipoleKernel):
    """A DipoleKernel as a Correction term q, q̂ ↦ C_dd(q)."""
    return lambda q, qd: kernel(q, qd)
