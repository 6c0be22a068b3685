"""Force constants as a plain frozen record: :class:`ForceConstants` (supercell, fc, Born data, how they were
made, where they came from) and :class:`FcReport`.

    fc[i, s, a, b] = ∂²E / ∂u_ia ∂u_sb   (eV/Å², shape (n_prim, n_super, 3, 3); home atom i = supercell atom i)

``provenance`` records where the force constants came from — "model" (:func:`phonjax.force_constants.
force_constants` of an ML model or energy function), "short-range-model" (a model trained on dipole-subtracted
labels) or "external" (phonopy / DFT files, or built by hand) — and decides what ``lr='auto'`` means
(:mod:`phonjax.longrange.policy`). The record holds no state beyond its fields; its phonon methods are thin
conveniences that build a :class:`~phonjax.longrange.LongRange` and call :mod:`phonjax.dynmat` /
:mod:`phonjax.bands` (a caller evaluating many q-lists builds the Correction once and calls
``dynmat.phonons(fc, q, correction)`` itself).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from phonjax.longrange.policy import check_provenance
from phonjax.structure import Crystal, Supercell

__all__ = ["ForceConstants", "FcReport", "ForceConstantsError"]


class ForceConstantsError(ValueError):
    """Bad input for the force-constant engine (mode, shapes, supercell)."""


@dataclass(frozen=True)
class FcReport:
    """Diagnostics (eV/Å²): max |Σ_s fc[i,s,a,b]| (asr) and max |fc − Eq.2 partner| (perm) before/after;
    chunk_size / edge_chunk: the memory plan (per device); n_devices: devices the products were split over."""

    asr_before: float
    asr_after: float
    perm_before: float
    perm_after: float
    asr: str = "none"
    symmetrized: bool = False
    mode: str = ""
    n_hvp: int = 0
    wall_time_s: float = 0.0
    chunk_size: int | None = None
    edge_chunk: int | None = None
    n_devices: int = 1


@dataclass(frozen=True, eq=False)
class ForceConstants:
    """Home-cell force constants of a supercell.

    supercell: :class:`~phonjax.structure.Supercell`.  fc: (n_prim, n_super, 3, 3) eV/Å², rows = home-cell atoms
    (supercell index i for primitive atom i).  born: Born charges/ε∞ (:class:`phonjax.born.Born`) or None.
    report: diagnostics of how fc was made.  qspace_asr: default of the q-space ASR (Eq. 14) in the phonon
    engine (False for force constants read from phonopy, so phonopy's numbers are reproduced).  provenance:
    "model", "short-range-model" or "external" (see the module docstring).
    """

    supercell: Supercell
    fc: np.ndarray
    born: object = None
    report: FcReport | None = None
    qspace_asr: bool = True
    provenance: str = "external"

    def __post_init__(self):
        fc = np.array(self.fc, dtype=np.float64)
        n, ns = self.supercell.primitive.n_atoms, self.supercell.crystal.n_atoms
        if fc.shape != (n, ns, 3, 3):
            raise ForceConstantsError(f"fc has shape {fc.shape}, expected {(n, ns, 3, 3)}")
        if not np.all(np.isfinite(fc)):
            raise ForceConstantsError("force constants contain non-finite values")
        fc.setflags(write=False)
        object.__setattr__(self, "fc", fc)
        if self.born is not None and self.born.n_atoms != n:
            raise ForceConstantsError(f"Born charges for {self.born.n_atoms} atoms, primitive cell has {n}")
        check_provenance(self.provenance)

    @property
    def primitive(self) -> Crystal:
        return self.supercell.primitive

    @property
    def n_branches(self) -> int:
        return 3 * self.primitive.n_atoms

    def with_born(self, born) -> "ForceConstants":
        return replace(self, born=born)

    # --- thin conveniences over dynmat / bands (no state) ------------------------------------------------
    def frequencies(self, qpoints, *, lr: str = "auto", born=None, q_direction=None, ewald_lambda=None,
                    leak_region=None, lo_projection: bool = False, asr: bool | None = None,
                    return_eigenvectors: bool = False, unit: str = "THz"):
        """Frequencies (nq, 3·n_prim) at reduced ``qpoints`` (nq, 3), ascending, imaginary as negative.

        lr: "auto" (by ``provenance``, :mod:`phonjax.longrange.policy`) or a mode of :mod:`phonjax.longrange`.
        q_direction: (3,) or per-q (nq, 3) direction of approach used at q = Γ (non-analytic term), in reduced
        coordinates of the reciprocal lattice (phonopy's convention).  asr: q-space ASR (Eq. 14); None →
        ``self.qspace_asr``.  unit: "THz", "cm-1" or "meV".  With ``return_eigenvectors`` returns (freqs,
        eigvecs (nq, 3n, 3n), columns = modes, phonopy's layout). Builds the correction on every call.
        """
        from phonjax.dynmat import phonons
        from phonjax.longrange.spec import LongRange
        corr = LongRange(lr, born, ewald_lambda, leak_region, lo_projection).correction(self)
        return phonons(self, qpoints, corr, q_direction=q_direction, asr=asr,
                       return_eigenvectors=return_eigenvectors, unit=unit)

    def dynamical_matrices(self, qpoints, *, lr: str = "auto", born=None, q_direction=None, ewald_lambda=None,
                           leak_region=None, lo_projection: bool = False, asr: bool | None = None) -> np.ndarray:
        """Mass-weighted Hermitian D(q), (nq, 3n, 3n) complex, eV/Å²/amu."""
        from phonjax.dynmat import dynamical_matrices
        from phonjax.longrange.spec import LongRange
        corr = LongRange(lr, born, ewald_lambda, leak_region, lo_projection).correction(self)
        return dynamical_matrices(self, qpoints, corr, q_direction=q_direction, asr=asr)

    def band_structure(self, path=None, *, npoints: int = 51, density: float | None = None, labels=None,
                       lr: str = "auto", born=None, ewald_lambda=None, leak_region=None,
                       lo_projection: bool = False, asr: bool | None = None, with_eigenvectors: bool = False):
        """Dispersion along ``path`` (None: automatic high-symmetry path): :class:`phonjax.bands.BandStructure`.
        See :func:`phonjax.bands.band_structure`."""
        from phonjax.bands import band_structure
        from phonjax.longrange.spec import LongRange
        return band_structure(self, path, npoints=npoints, density=density, labels=labels, asr=asr,
                              longrange=LongRange(lr, born, ewald_lambda, leak_region, lo_projection),
                              with_eigenvectors=with_eigenvectors)

    def dos(self, mesh=(16, 16, 16), *, sigma: float | None = None, n_points: int = 501, lr: str = "auto",
            born=None, ewald_lambda=None, asr: bool | None = None):
        """Phonon DOS on a Γ-centred mesh: :func:`phonjax.bands.phonon_dos`."""
        from phonjax.bands import phonon_dos
        from phonjax.longrange.spec import LongRange
        return phonon_dos(self, mesh, sigma=sigma, n_points=n_points, asr=asr,
                          longrange=LongRange(lr, born, ewald_lambda))
