"""Born effective charges Z* and the high-frequency dielectric tensor ε∞.

Conventions (phonopy's ``BORN``): ``zstar[k, E, u]`` is the Born effective charge of atom k (units of e),
the first index E is the field direction (contracted with q or the electric field), the second u the
displacement direction: the polarisation from displacing atom k is ``P_E = Z[k, E, u] u_u / V``.
``epsilon`` is ε∞ (3, 3), dimensionless. ``factor`` is e²/(4πε0) in eV·Å (14.399645 by default; phonopy
BORN files usually carry 14.400 on their first line, which is kept so results match phonopy exactly).

Readers:
* phonopy ``BORN``: line 1 unit factor (a non-number: default factor), optional G cutoff and Λ after it;
  line 2 the nine components of ε∞; then nine components of Z* per symmetry-independent atom of the given
  primitive cell (expanded by spglib symmetry operations, as phonopy does), or per atom of the primitive cell
  (``--nosym`` files), or per atom / independent atom of a conventional ``unitcell`` given by the caller,
  mapped to the primitive atoms by position.
* Quantum ESPRESSO ``ph.x`` output (``Dielectric constant in cartesian axis`` / ``Effective charges
  (d Force / dE) in cartesian axis``) and ``ph.x`` dynamical-matrix files (``Dielectric Tensor`` /
  ``Effective Charges E-U``), atoms mapped to the primitive cell by position when the file lists them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re

import numpy as np

from phonjax import units
from phonjax.structure import Crystal

__all__ = [
    "Born", "BornError", "NonNeutralChargesError", "DielectricError", "BornAtomCountError",
    "read_born", "read_phonopy_born", "read_qe_born",
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
# symmetry and atom mapping
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


def map_atoms_by_position(target: Crystal, source_positions: np.ndarray, source_numbers=None,
                          *, tol: float = 1e-3) -> np.ndarray:
    """For each atom of ``target``, the index of the ``source`` atom at the same position modulo the target's
    lattice (Cartesian Å, tolerance ``tol`` Å). Raises :class:`BornError` when an atom has no match."""
    src = np.asarray(source_positions, dtype=np.float64).reshape(-1, 3)
    inv = np.linalg.inv(target.cell)
    out = np.empty(target.n_atoms, dtype=np.int64)
    for k in range(target.n_atoms):
        d = (src - target.positions[k]) @ inv
        d -= np.round(d)
        dist = np.linalg.norm(d @ target.cell, axis=1)
        if source_numbers is not None:
            dist = np.where(np.asarray(source_numbers) == target.numbers[k], dist, np.inf)
        j = int(np.argmin(dist))
        if dist[j] > tol:
            raise BornError(f"atom {k} ({target.symbols[k]}) of the primitive cell matches no atom of the Born file "
                            f"(closest {dist[j]:.3g} Å)")
        out[k] = j
    return out


# ---------------------------------------------------------------------------------------------------------
# phonopy BORN
# ---------------------------------------------------------------------------------------------------------
def _floats(line: str, n: int, what: str) -> np.ndarray:
    parts = line.split()
    try:
        vals = [float(x) for x in parts[:n]]
    except ValueError as e:
        raise BornError(f"BORN: cannot read {what}: {line.strip()!r}") from e
    if len(parts) != n:
        raise BornError(f"BORN: {what} needs {n} numbers, got {len(parts)}: {line.strip()!r}")
    return np.array(vals)


def read_phonopy_born(path, atoms, *, unitcell=None, symprec: float = 1e-5, enforce_neutrality: bool = True,
                      max_correction: float = MAX_NEUTRALITY_CORRECTION) -> Born:
    """Read a phonopy ``BORN`` file for the primitive cell ``atoms`` (Crystal, ase.Atoms, phonopy atoms).

    The Z* lines may list (checked in this order) the symmetry-independent atoms of ``atoms``, all atoms of
    ``atoms``, or — when ``unitcell`` (the conventional cell the file was written for) is given — all atoms or
    the independent atoms of ``unitcell``; those are mapped to the primitive atoms by position.
    """
    prim = Crystal.coerce(atoms)
    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 3:
        raise BornError(f"{path}: a BORN file needs a unit line, ε∞ and at least one Z* line")
    head = lines[0].split()
    try:
        factor = float(head[0])
    except ValueError:
        factor = units.COULOMB_EV_A
    eps = _floats(lines[1], 9, "epsilon (line 2)").reshape(3, 3)
    zl = np.array([_floats(ln, 9, f"Z* (line {i + 3})") for i, ln in enumerate(lines[2:])]).reshape(-1, 3, 3)
    nz = len(zl)
    ind = independent_atoms(prim, symprec)
    if nz == len(ind):
        z = expand_by_symmetry(prim, zl, symprec)
    elif nz == prim.n_atoms:
        z = zl
    elif unitcell is not None:
        uc = Crystal.coerce(unitcell)
        uind = independent_atoms(uc, symprec)
        if nz == uc.n_atoms:
            zu = zl
        elif nz == len(uind):
            zu = expand_by_symmetry(uc, zl, symprec)
        else:
            raise BornAtomCountError(
                f"{path}: {nz} Z* entries, but the unit cell has {uc.n_atoms} atoms ({len(uind)} independent)")
        idx = map_atoms_by_position(prim, uc.positions, uc.numbers)
        z = zu[idx]
    else:
        raise BornAtomCountError(
            f"{path}: {nz} Z* entries, but the primitive cell has {prim.n_atoms} atoms ({len(ind)} independent); "
            "pass unitcell= if the file belongs to a conventional cell")
    return Born.from_arrays(z, eps, factor=factor, enforce_neutrality=enforce_neutrality,
                            max_correction=max_correction, source=str(path))


# ---------------------------------------------------------------------------------------------------------
# Quantum ESPRESSO
# ---------------------------------------------------------------------------------------------------------
_NUM = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"


def _nums(s: str) -> list[float]:
    return [float(x.replace("D", "E").replace("d", "e")) for x in re.findall(_NUM, s)]


def _qe_positions(text: str):
    """(alat Å, positions Å, species labels) from a ph.x output or dyn file header, or None."""
    alat = None
    m = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _NUM + r")\s*a\.u\.", text)
    if m:
        alat = float(m.group(1)) * units.BOHR_A
    m = re.search(r"site n\.\s+atom.*positions \(alat units\)\n((?:\s+\d+\s+\S+.*tau\(.*\n)+)", text)
    if alat is not None and m:
        labels, pos = [], []
        for ln in m.group(1).splitlines():
            mm = re.match(r"\s*\d+\s+(\S+)\s+(?:\S+\s+)?tau\(\s*\d+\)\s*=\s*\((.*)\)", ln)
            if mm:
                labels.append(mm.group(1))
                pos.append(_nums(mm.group(2))[:3])
        return alat, np.array(pos) * alat, labels
    return None


def _qe_dyn_positions(lines: list[str]):
    """(positions Å, type indices) from the header of a ph.x dynamical-matrix file, or None."""
    try:
        hdr = _nums(lines[2])
        ntyp, nat, ibrav = int(hdr[0]), int(hdr[1]), int(hdr[2])
        alat = hdr[3] * units.BOHR_A
        k = 3 + (4 if ibrav == 0 else 0) + ntyp  # 'Basis vectors' + 3 lines when ibrav = 0
        pos = []
        for ln in lines[k:k + nat]:
            v = _nums(ln)
            pos.append(v[2:5])
        return np.array(pos) * alat
    except (IndexError, ValueError):
        return None


def read_qe_born(path, atoms, *, enforce_neutrality: bool = True, max_correction: float = MAX_NEUTRALITY_CORRECTION,
                 map_by_position: bool = True) -> Born:
    """Read ε∞ and Z* from a QE ``ph.x`` output (``epsil``/``zeu``) or a ph.x dynamical-matrix file.

    ph.x output: the last ``Dielectric constant in cartesian axis`` block and the last ``Effective charges
    (d Force / dE) in cartesian axis`` block (rows Ex, Ey, Ez = field direction → Z[k, E, u]).
    dyn file: ``Dielectric Tensor:`` and ``Effective Charges E-U: Z_{alpha}{s,beta}`` (alpha = E).
    Atoms are matched to ``atoms`` by position when the file states positions (alat from its header).
    """
    prim = Crystal.coerce(atoms)
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines()
    eps = z = None
    qe_pos = None
    if "Dielectric Tensor:" in text:  # dyn file
        i = max(k for k, ln in enumerate(lines) if "Dielectric Tensor:" in ln)
        rows = [_nums(ln) for ln in lines[i + 1:i + 6] if _nums(ln)][:3]
        eps = np.array(rows)
        i = max(k for k, ln in enumerate(lines) if "Effective Charges E-U" in ln)
        zs = []
        k = i + 1
        while k < len(lines):
            ln = lines[k]
            if re.match(r"\s*atom\s*#", ln):
                zs.append([_nums(lines[k + 1 + r])[:3] for r in range(3)])
                k += 4
                continue
            if ln.strip() and not _nums(ln):
                break
            k += 1
        z = np.array(zs)
        if map_by_position:
            qe_pos = _qe_dyn_positions(lines)
    elif "Dielectric constant in cartesian axis" in text:
        i = max(k for k, ln in enumerate(lines) if "Dielectric constant in cartesian axis" in ln)
        rows = [_nums(ln) for ln in lines[i + 1:i + 6] if re.search(r"\(", ln)][:3]
        eps = np.array(rows)
        starts = [k for k, ln in enumerate(lines) if "Effective charges (d Force / dE) in cartesian axis" in ln]
        if not starts:
            raise BornError(f"{path}: no 'Effective charges (d Force / dE)' block (run ph.x with zeu/epsil)")
        k = starts[-1] + 1
        zs = []
        while k < len(lines):
            ln = lines[k]
            if re.match(r"\s*atom\s+\d+", ln):
                rows = []
                for r in range(1, 4):
                    m = re.search(r"\((.*)\)", lines[k + r])
                    rows.append(_nums(m.group(1))[:3] if m else [])
                zs.append(rows)
                k += 4
                continue
            if ln.strip() and zs:
                break
            k += 1
        try:
            z = np.array(zs, dtype=np.float64)
        except ValueError as e:
            raise BornError(f"{path}: malformed effective-charge block") from e
        if map_by_position:
            p = _qe_positions(text)
            qe_pos = None if p is None else p[1]
    else:
        raise BornError(f"{path}: no dielectric tensor found (neither a ph.x output nor a dyn file with epsil)")
    if eps.shape != (3, 3):
        raise BornError(f"{path}: could not read a 3x3 dielectric tensor")
    if z.ndim != 3 or z.shape[1:] != (3, 3):
        raise BornError(f"{path}: could not read the effective charges")
    if z.shape[0] != prim.n_atoms:
        raise BornAtomCountError(f"{path}: {z.shape[0]} atoms with Z*, primitive cell has {prim.n_atoms}")
    if qe_pos is not None and len(qe_pos) == prim.n_atoms:
        z = z[map_atoms_by_position(prim, qe_pos)]
    return Born.from_arrays(z, eps, factor=units.COULOMB_EV_A, enforce_neutrality=enforce_neutrality,
                            max_correction=max_correction, source=str(path))


def read_born(path, atoms, *, unitcell=None, fmt: str = "auto", symprec: float = 1e-5,
              enforce_neutrality: bool = True, max_correction: float = MAX_NEUTRALITY_CORRECTION) -> Born:
    """Read Born charges and ε∞ for the primitive cell ``atoms`` from a phonopy BORN or a QE file.

    fmt: "auto" (QE when the file contains QE markers, else phonopy BORN), "phonopy" or "qe".
    See :func:`read_phonopy_born` and :func:`read_qe_born`.
    """
    path = Path(path)
    if not path.is_file():
        raise BornError(f"Born file not found: {path}")
    if fmt == "auto":
        text = path.read_text()
        fmt = "qe" if ("Dielectric Tensor:" in text or "Dielectric constant in cartesian axis" in text) else "phonopy"
    if fmt == "phonopy":
        return read_phonopy_born(path, atoms, unitcell=unitcell, symprec=symprec,
                                 enforce_neutrality=enforce_neutrality, max_correction=max_correction)
    if fmt == "qe":
        return read_qe_born(path, atoms, enforce_neutrality=enforce_neutrality, max_correction=max_correction)
    raise BornError(f"unknown Born file format {fmt!r} (auto, phonopy, qe)")
