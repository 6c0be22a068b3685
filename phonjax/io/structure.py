"""Structures in and out, and atoms matched between two descriptions of the same crystal.

:func:`read_structure`: a :class:`~phonjax.structure.Crystal` from a file any ASE reader understands (a QE pw.x
input is recognised by its ``&system`` namelist), a Materials Project id ``mp-…`` (needs ``MP_API_KEY`` and the
``mp-api`` package), an ``ase.Atoms`` or a Crystal. :func:`write_poscar`: VASP 5 POSCAR (direct coordinates).

:func:`match_atoms`: for each query position the index of the atom at the same place modulo a lattice — the one
helper behind phonopy ↔ phonjax supercell maps, BORN / QE atoms → primitive atoms, and finite-displacement
force constants. Tolerance :data:`ATOM_MATCH_TOL` (Å).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from phonjax.structure import Crystal

__all__ = ["read_structure", "write_poscar", "match_atoms", "StructureInputError", "StructureNotFoundError", "AtomMatchError",
           "ATOM_MATCH_TOL"]

#: Largest distance (Å) at which two positions count as the same atom modulo the lattice. Files print positions
#: to 1e-6…1e-8 Å (phonopy yaml, QE outputs in alat units with 7–10 decimals, BORN unit cells typed by hand to
#: ~1e-4), while distinct atoms of a crystal are ≥ ~0.5 Å apart: 1e-3 Å accepts every printed copy of a position
#: and is 500× below any interatomic distance, so it can neither miss an atom nor pick a wrong one; the
#: one-to-one check in :func:`match_atoms` catches a wrong lattice all the same.
ATOM_MATCH_TOL = 1e-3


class StructureInputError(ValueError):
    """A structure cannot be obtained (unreadable file, Materials Project unavailable)."""


class StructureNotFoundError(StructureInputError, FileNotFoundError):
    """The structure file does not exist."""


class AtomMatchError(ValueError):
    """Positions cannot be matched one-to-one modulo the lattice."""


def match_atoms(query, positions, cell, *, query_numbers=None, numbers=None, tol: float = ATOM_MATCH_TOL,
                one_to_one: bool = True) -> np.ndarray:
    """Index into ``positions`` (n, 3) of each ``query`` point (nq, 3), modulo the lattice ``cell`` (3, 3 rows);
    all Cartesian Å. With ``query_numbers``/``numbers`` only atoms of the same species match.

    Returns (nq,) int64. Raises :class:`AtomMatchError` when a query point has no atom within ``tol`` Å, or, with
    ``one_to_one``, when two query points map onto the same atom.
    """
    q = np.asarray(query, dtype=np.float64).reshape(-1, 3)
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.asarray(cell, dtype=np.float64)
    inv = np.linalg.inv(cell)
    out = np.empty(len(q), dtype=np.int64)
    for k in range(len(q)):  # one row at a time: (n,) memory, supercells of thousands of atoms
        d = (p - q[k]) @ inv
        d -= np.round(d)
        dist = np.linalg.norm(d @ cell, axis=1)
        if numbers is not None and query_numbers is not None:
            dist = np.where(np.asarray(numbers) == np.asarray(query_numbers)[k], dist, np.inf)
        j = int(np.argmin(dist))
        if not dist[j] <= tol:
            raise AtomMatchError(f"atom {k} matches no atom within {tol:g} Å (closest {dist[j]:.3g} Å)")
        out[k] = j
    if one_to_one and len(np.unique(out)) != len(out):
        raise AtomMatchError("the atom mapping is not one-to-one")
    return out


def read_structure(spec) -> Crystal:
    """Crystal from a path (any ASE format; pw.x inputs detected), an ``mp-…`` id, an ase.Atoms or a Crystal."""
    if not isinstance(spec, (str, Path)):
        return Crystal.coerce(spec)
    text_spec = str(spec)
    if text_spec.startswith("mp-") and not Path(text_spec).exists():
        return _from_materials_project(text_spec)
    path = Path(text_spec)
    if not path.is_file():
        raise StructureNotFoundError(f"structure file not found: {path}")
    from ase.io import read  # noqa: PLC0415

    text = path.read_text(errors="replace")
    fmt = "espresso-in" if "&system" in text.lower() else None
    try:
        atoms = read(str(path), format=fmt)
    except Exception as e:  # noqa: BLE001 - ASE raises many types
        raise StructureInputError(f"{path}: ASE could not read a structure ({type(e).__name__}: {e})") from None
    return Crystal.from_ase(atoms)


def _from_materials_project(mp_id: str) -> Crystal:
    key = os.environ.get("MP_API_KEY")
    if not key:
        raise StructureInputError(f"{mp_id}: Materials Project needs an API key in MP_API_KEY (and network); "
                                  "or give a structure file (cif/POSCAR/pw.in)")
    try:
        from mp_api.client import MPRester  # noqa: PLC0415
        from pymatgen.io.ase import AseAtomsAdaptor  # noqa: PLC0415
    except ImportError:
        raise StructureInputError(f"{mp_id}: the `mp-api` package is not installed (pip install mp-api); "
                                  "or give a structure file") from None
    try:
        with MPRester(key) as mpr:
            struct = mpr.get_structure_by_material_id(mp_id, final=True)
    except Exception as e:  # noqa: BLE001 - network/API errors become one clear message
        raise StructureInputError(f"{mp_id}: Materials Project query failed ({type(e).__name__}: {e})") from None
    return Crystal.from_ase(AseAtomsAdaptor.get_atoms(struct))


def write_poscar(path: Path, crystal: Crystal, comment: str) -> None:
    """VASP 5 POSCAR (direct coordinates) with ``comment`` as its first line; species grouped as given."""
    syms = [chemical_symbols[int(z)] for z in crystal.numbers]
    order = sorted(range(len(syms)), key=lambda i: list(dict.fromkeys(syms)).index(syms[i]))
    species = list(dict.fromkeys(syms))
    lines = [comment.replace("\n", " "), "1.0"]
    lines += ["  " + " ".join(f"{x:21.15f}" for x in row) for row in crystal.cell]
    lines += ["  " + " ".join(species), "  " + " ".join(str(syms.count(s)) for s in species), "Direct"]
    frac = crystal.scaled_positions
    lines += ["  " + " ".join(f"{x:19.15f}" for x in frac[i]) for i in order]
    Path(path).write_text("\n".join(lines) + "\n")
