"""Crystal structures: primitive cells, supercells (general integer matrices), atom maps.

Conventions (phonopy's): lattice vectors are the *rows* of ``cell`` (Å); a supercell matrix ``M``
(3×3 integers) gives ``supercell.cell = M @ primitive.cell``. Positions are Cartesian (Å).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import itertools

import numpy as np
import ase
from ase.data import atomic_masses, chemical_symbols


def _frozen_array(a, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Crystal:
    """A periodic structure. Arrays are read-only.

    cell: (3, 3) Å, rows are lattice vectors.  positions: (n, 3) Å, Cartesian.
    numbers: (n,) atomic numbers.  masses: (n,) amu (default: ASE's standard masses).
    """

    cell: np.ndarray
    positions: np.ndarray
    numbers: np.ndarray
    masses: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        object.__setattr__(self, "cell", _frozen_array(self.cell, np.float64).reshape(3, 3))
        pos = _frozen_array(self.positions, np.float64).reshape(-1, 3)
        object.__setattr__(self, "positions", pos)
        num = _frozen_array(self.numbers, np.int64).reshape(-1)
        if num.shape[0] != pos.shape[0]:
            raise ValueError(f"{num.shape[0]} atomic numbers for {pos.shape[0]} positions")
        if np.any(num < 1) or np.any(num >= len(chemical_symbols)):
            raise ValueError(f"invalid atomic numbers {sorted(set(num.tolist()))}")
        object.__setattr__(self, "numbers", num)
        masses = atomic_masses[num] if self.masses is None else self.masses
        object.__setattr__(self, "masses", _frozen_array(masses, np.float64).reshape(-1))
        if abs(np.linalg.det(self.cell)) < 1e-8:
            raise ValueError("cell is singular (volume ~ 0)")

    # -- constructors / conversions -------------------------------------------------
    @classmethod
    def from_ase(cls, atoms: ase.Atoms) -> "Crystal":
        if not all(atoms.pbc):
            raise ValueError("phonons need a periodic structure (pbc=True in all directions)")
        return cls(atoms.cell.array, atoms.positions, atoms.numbers, atoms.get_masses())

    @classmethod
    def coerce(cls, obj) -> "Crystal":
        """Crystal from a Crystal, an ase.Atoms or a phonopy/ASE-like object with cell/positions/numbers."""
        if isinstance(obj, Crystal):
            return obj
        if isinstance(obj, ase.Atoms):
            return cls.from_ase(obj)
        if hasattr(obj, "cell") and hasattr(obj, "scaled_positions") and hasattr(obj, "numbers"):
            cell = np.asarray(obj.cell)
            return cls(cell, np.asarray(obj.scaled_positions) @ cell, obj.numbers, getattr(obj, "masses", None))
        raise TypeError(f"cannot make a Crystal from {type(obj).__name__}")

    def to_ase(self) -> ase.Atoms:
        atoms = ase.Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=True)
        atoms.set_masses(self.masses)
        return atoms

    # -- derived quantities ---------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def scaled_positions(self) -> np.ndarray:
        """(n, 3) fractional coordinates."""
        return self.positions @ np.linalg.inv(self.cell)

    @property
    def reciprocal_cell(self) -> np.ndarray:
        """(3, 3) reciprocal basis without 2π: columns b_j with a_i·b_j = δ_ij (phonopy's ``inv(cell)``)."""
        return np.linalg.inv(self.cell)

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.numbers]


def lattice_points(supercell_matrix) -> np.ndarray:
    """Integer lattice vectors n (in primitive fractional coordinates) of the det(M) primitive cells
    inside the supercell ``M @ cell``, shape (det M, 3), first row 0.

    A point n belongs to the supercell when its fractional coordinates in the supercell basis,
    ``n @ inv(M)``, lie in [0, 1).
    """
    M = np.asarray(supercell_matrix, dtype=np.int64).reshape(3, 3)
    det = int(round(np.linalg.det(M)))
    if det <= 0:
        raise ValueError(f"supercell matrix must have a positive determinant, got {det}")
    corners = np.array(list(itertools.product([0, 1], repeat=3))) @ M
    lo, hi = corners.min(0), corners.max(0)
    grid = np.stack(np.meshgrid(*[np.arange(l, h + 1) for l, h in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    frac = grid @ np.linalg.inv(M)
    eps = 1e-9
    inside = np.all((frac > -eps) & (frac < 1 - eps), axis=1)
    pts = grid[inside]
    if len(pts) != det:
        raise RuntimeError(f"found {len(pts)} lattice points for det(M) = {det}")
    order = np.lexsort(pts.T[::-1])
    pts = pts[order]
    zero = np.flatnonzero(np.all(pts == 0, axis=1))[0]
    return np.concatenate([pts[zero:zero + 1], np.delete(pts, zero, axis=0)])


@dataclass(frozen=True, eq=False)
class Supercell:
    """A supercell of a primitive crystal and the maps between them.

    crystal: the supercell as a Crystal (atoms ordered cell-major: all primitive atoms of lattice
    point 0, then lattice point 1, ...).  matrix: (3, 3) int, ``crystal.cell = matrix @ primitive.cell``.
    lattice: (N_cells, 3) int lattice vectors (primitive fractional) of each image cell.
    s2p: (n_super,) primitive index of each supercell atom.  s2l: (n_super,) lattice-point index.
    p2s: (n_prim,) supercell index of each primitive atom in the home cell (== arange(n_prim)).
    """

    primitive: Crystal
    crystal: Crystal
    matrix: np.ndarray
    lattice: np.ndarray
    s2p: np.ndarray
    s2l: np.ndarray

    @property
    def p2s(self) -> np.ndarray:
        return np.arange(self.primitive.n_atoms)

    @property
    def n_cells(self) -> int:
        return int(self.lattice.shape[0])


def make_supercell(primitive, supercell_matrix) -> Supercell:
    """Build the supercell ``M @ primitive.cell`` (M: an int, 3 ints for a diagonal, or a 3×3 matrix)."""
    prim = Crystal.coerce(primitive)
    M = np.asarray(supercell_matrix, dtype=np.int64)
    if M.ndim == 0:
        M = np.eye(3, dtype=np.int64) * int(M)
    elif M.shape == (3,):
        M = np.diag(M)
    M = M.reshape(3, 3)
    lat = lattice_points(M)
    n = prim.n_atoms
    pos = (lat @ prim.cell)[:, None, :] + prim.positions[None, :, :]
    crystal = Crystal(M @ prim.cell, pos.reshape(-1, 3), np.tile(prim.numbers, len(lat)), np.tile(prim.masses, len(lat)))
    s2p = np.tile(np.arange(n), len(lat))
    s2l = np.repeat(np.arange(len(lat)), n)
    return Supercell(prim, crystal, _frozen_array(M, np.int64), _frozen_array(lat, np.int64),
                     _frozen_array(s2p, np.int64), _frozen_array(s2l, np.int64))


def commensurate_qpoints(supercell_matrix) -> np.ndarray:
    """q-points (reduced coordinates of the primitive reciprocal basis, no 2π) commensurate with the
    supercell: q with q·M^T integer, reduced to [0, 1). Shape (det M, 3)."""
    M = np.asarray(supercell_matrix, dtype=np.int64).reshape(3, 3)
    # q·n is integer for all supercell lattice vectors n = rows of M  <=>  M q ∈ Z³.
    # The commensurate q form the lattice inv(M) Z³ modulo Z³; they are the lattice points of M^T.
    pts = lattice_points(M.T)
    q = pts @ np.linalg.inv(M.T)  # rows: q = M⁻¹ n
    q = q - np.floor(q + 1e-12)
    return q


def lattice_index(supercell: Supercell, vectors) -> np.ndarray:
    """Index into ``supercell.lattice`` of integer lattice vectors ``vectors`` (..., 3) reduced modulo the
    supercell lattice (rows of ``supercell.matrix``). Shape (...)."""
    v = np.asarray(vectors, dtype=np.int64)
    M = supercell.matrix
    frac = v.reshape(-1, 3) @ np.linalg.inv(M.astype(np.float64))
    red = np.round((frac - np.floor(frac + 1e-9)) @ M).astype(np.int64)
    key = {tuple(x): i for i, x in enumerate(supercell.lattice.tolist())}
    try:
        idx = np.array([key[tuple(x)] for x in red.tolist()], dtype=np.int64)
    except KeyError as e:  # pragma: no cover - lattice_points guarantees completeness
        raise RuntimeError(f"lattice vector {e} not found in the supercell") from None
    return idx.reshape(v.shape[:-1])


def supercell_matrix(value) -> np.ndarray:
    """Normalise a supercell spec (int N, 3 ints, or 3×3) to a (3, 3) int matrix; singular/negative → ValueError."""
    M = np.asarray(value)
    if M.dtype.kind not in "iu" and not np.allclose(M, np.round(M)):
        raise ValueError(f"supercell matrix must be integer, got {M.tolist()}")
    M = np.round(M).astype(np.int64)
    if M.ndim == 0:
        M = np.eye(3, dtype=np.int64) * int(M)
    elif M.shape == (3,):
        M = np.diag(M)
    elif M.shape != (3, 3):
        raise ValueError(f"supercell must be N, (N1, N2, N3) or a 3x3 matrix, got shape {M.shape}")
    det = int(round(np.linalg.det(M)))
    if det == 0:
        raise ValueError(f"supercell matrix {M.tolist()} is singular")
    if det < 0:
        raise ValueError(f"supercell matrix {M.tolist()} has a negative determinant (left-handed)")
    return M
