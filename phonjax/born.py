"""Born effective charges Z* and the high-frequency dielectric tensor ε∞.

Conventions (phonopy's ``BORN``): ``zstar[k, E, u]`` is the Born effective charge of atom k (units of e),
the first index E is the field direction (contracted with q or the electric field), the second u the
displacement direction: the polarisation from displacing atom k is ``P_E = Z[k, E, u] u_u / V``.
``epsilon`` is ε∞ (3, 3), dimensionless. ``factor`` is e²/(4πε0) in eV·Å (``units.COULOMB_EV_A`` by default;
phonopy BORN files usually carry 14.400 on their first line, which is kept so results match phonopy exactly).

Files (phonopy ``BORN``, QE ph.x outputs and dynamical-matrix files) are read and written by
:mod:`phonjax.io.born`; this module holds the validated :class:`Born` record and the symmetry expansion of Z*
from the symmetry-independent atoms (:func:`independent_atoms`, :func:`expand_by_symmetry`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phonjax import units
from phonjax.structure import Crystal

__all__ = [
    "Born", "BornError", "NonNeutralChargesError", "DielectricError", "BornAtomCountError",
    "independent_atoms", "expand_by_symmetry", "check_dielectric",
]

#: Default largest per-atom neutrality correction |ΣZ|/n (e) that ``enforce_neutrality`` applies silently.
MAX_NEUTRALITY_CORRECTION = 0.05
#: Charge sums below this (e) count as neutral without correction.
NEUTRAL_ATOL = 1e-8


class BornError(ValueError):
    """Invalid Born charges / dielectric tensor input."""


class NonNeutralChargesError(BornError):
    """Σ_k Z*_k is not zero (within tolerance)."""


class DielectricError(BornError):
    """ε∞ is not symmetric positive-definite."""


class BornAtomCountError(BornError):
    """A Born file lists a number of atoms that matches neither the cell nor its independent atoms."""


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Born:
    """Born effective charges and ε∞ of a primitive cell (arrays read-only).

    zstar: (n_prim, 3, 3) e, [atom, E_dir, u_dir].  epsilon: (3, 3).  factor: e²/(4πε0) in eV·Å.
    neutrality_correction: the largest |component| of the per-atom correction −ΣZ/n applied (0 if none).
    source: provenance (file name or "arrays").

    The constructor validates shapes, ε symmetric positive-definite, and Σ_k Z_k = 0 within
    ``NEUTRAL_ATOL``; use :meth:`from_arrays` to correct slightly non-neutral charges.
    """

    zstar: np.ndarray
    epsilon: np.ndarray
    factor: float = units.COULOMB_EV_A
    neutrality_correction: float = 0.0
    source: str = "arrays"

    def __post_init__(self):
        z = np.asarray(self.zstar, dtype=np.float64)
        if z.ndim == 2 and z.shape[1] == 9:
            z = z.reshape(-1, 3, 3)
        if z.ndim != 3 or z.shape[1:] != (3, 3) or z.shape[0] < 1:
            raise BornError(f"zstar must have shape (n_atoms, 3, 3), got {z.shape}")
        eps = np.asarray(self.epsilon, dtype=np.float64)
        if eps.size == 9:
            eps = eps.reshape(3, 3)
        if eps.shape != (3, 3):
            raise BornError(f"epsilon must have shape (3, 3), got {eps.shape}")
        if not np.all(np.isfinite(z)) or not np.all(np.isfinite(eps)):
            raise BornError("Born charges / dielectric tensor contain non-finite values")
        check_dielectric(eps)
        s = np.abs(z.sum(axis=0)).max()
        if s > NEUTRAL_ATOL:
            raise NonNeutralChargesError(
                f"Born charges are not neutral: max |sum_k Z*_k| = {s:.3g} e "
                "(use Born.from_arrays(..., enforce_neutrality=True) to correct)")
        if not (self.factor > 0):
            raise BornError(f"unit factor e^2/(4 pi eps0) must be positive, got {self.factor}")
        object.__setattr__(self, "zstar", _frozen(z))
        object.__setattr__(self, "epsilon", _frozen(eps))
        object.__setattr__(self, "factor", float(self.factor))

    @classmethod
    def from_arrays(cls, zstar, epsilon, *, factor: float = units.COULOMB_EV_A, enforce_neutrality: bool = True,
                    max_correction: float = MAX_NEUTRALITY_CORRECTION, symmetrize_epsilon: bool = True,
                    source: str = "arrays") -> "Born":
        """Validated Born object from arrays.

        With ``enforce_neutrality`` the mean Z̄ = Σ_k Z_k / n is subtracted from every atom (phonopy's and QE's
        'simple' charge sum rule) and the largest |component| of Z̄ is recorded in ``neutrality_correction``;
        a correction larger than ``max_correction`` (e) raises :class:`NonNeutralChargesError`.
        ``symmetrize_epsilon`` replaces ε by (ε + εᵀ)/2 when the asymmetry is below 1e-6 relative.
        """
        z = np.array(zstar, dtype=np.float64)
        if z.ndim == 2 and z.shape[1] == 9:
            z = z.reshape(-1, 3, 3)
        if z.ndim != 3 or z.shape[1:] != (3, 3):
            raise BornError(f"zstar must have shape (n_atoms, 3, 3), got {z.shape}")
        eps = np.array(epsilon, dtype=np.float64).reshape(3, 3)
        if symmetrize_epsilon and np.abs(eps - eps.T).max() <= 1e-6 * max(1.0, np.abs(eps).max()):
            eps = 0.5 * (eps + eps.T)
        corr = 0.0
        mean = z.sum(axis=0) / z.shape[0]
        if enforce_neutrality and np.abs(z.sum(axis=0)).max() > NEUTRAL_ATOL:
            corr = float(np.abs(mean).max())
            if corr > max_correction:
                raise NonNeutralChargesError(
                    f"Born charges far from neutral: mean Z* component {corr:.3g} e exceeds "
                    f"max_correction={max_correction} e (wrong file or atom mapping?)")
            z = z - mean
        return cls(z, eps, factor=factor, neutrality_correction=corr, source=source)

    @property
    def n_atoms(self) -> int:
        return int(self.zstar.shape[0])

    def nac_prefactor(self, volume: float) -> float:
        """factor·4π/V in eV/Å² (V in Å³): the prefactor of every dipole–dipole term."""
        return self.factor * 4.0 * np.pi / volume

    def to_phonopy_nac_params(self) -> dict:
        """``{'born', 'dielectric', 'factor'}`` for ``Phonopy.nac_params = ...`` (factor = unit, not 4π/V)."""
        return {"born": np.array(self.zstar), "dielectric": np.array(self.epsilon), "factor": self.factor}


def check_dielectric(eps: np.ndarray, *, rtol: float = 1e-6) -> None:
    """Raise :class:`DielectricError` unless ε (3, 3) is symmetric and positive-definite."""
    eps = np.asarray(eps, dtype=np.float64)
    scale = max(1.0, float(np.abs(eps).max()))
    if np.abs(eps - eps.T).max() > rtol * scale:
        raise DielectricError(f"dielectric tensor is not symmetric: max |eps - eps^T| = {np.abs(eps - eps.T).max():.3g}")
    w = np.linalg.eigvalsh(0.5 * (eps + eps.T))
    if w.min() <= 0:
        raise DielectricError(f"dielectric tensor is not positive-definite: eigenvalues {np.round(w, 6).tolist()}")


# ---------------------------------------------------------------------------------------------------------
# symmetry
# ---------------------------------------------------------------------------------------------------------
def _spglib_dataset(crystal: Crystal, symprec: float):
    import spglib

    ds = spglib.get_symmetry_dataset((crystal.cell, crystal.scaled_positions, crystal.numbers), symprec=symprec)
    if ds is None:
        raise BornError("spglib could not determine the symmetry of the cell")
    return ds


def independent_atoms(crystal: Crystal, symprec: float = 1e-5) -> np.ndarray:
    """Indices of symmetry-independent atoms (first atom of each orbit, ascending), as phonopy lists them."""
    ds = _spglib_dataset(crystal, symprec)
    return np.unique(np.asarray(ds.equivalent_atoms))


def expand_by_symmetry(crystal: Crystal, z_independent: np.ndarray, symprec: float = 1e-5) -> np.ndarray:
    """Z* of every atom from the Z* of the independent atoms (:func:`independent_atoms` order).

    For atom k in the orbit of representative r, find a space-group operation (R, t) with R x_r + t ≡ x_k
    (mod 1) and set Z_k = R_c Z_r R_cᵀ, R_c = Lᵀ R L⁻ᵀ the Cartesian rotation (both Z indices are vectors).
    """
    ds = _spglib_dataset(crystal, symprec)
    eq = np.asarray(ds.equivalent_atoms)
    indep = np.unique(eq)
    z_ind = np.asarray(z_independent, dtype=np.float64).reshape(len(indep), 3, 3)
    frac = crystal.scaled_positions
    L = crystal.cell
    out = np.zeros((crystal.n_atoms, 3, 3))
    for k in range(crystal.n_atoms):
        r = eq[k]
        zr = z_ind[np.searchsorted(indep, r)]
        if k == r:
            out[k] = zr
            continue
        for R, t in zip(ds.rotations, ds.translations):
            d = R @ frac[r] + t - frac[k]
            d -= np.round(d)
            if np.abs(d @ L).max() < 10 * symprec * max(1.0, np.abs(L).max()):
                Rc = L.T @ R @ np.linalg.inv(L.T)
                out[k] = Rc @ zr @ Rc.T
                break
        else:  # pragma: no cover - spglib guarantees an operation
            raise BornError(f"no symmetry operation maps atom {r} onto atom {k}")
    return out
