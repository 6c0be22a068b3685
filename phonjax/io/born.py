"""Born-charge files: phonopy ``BORN`` (read and write) and Quantum ESPRESSO ph.x outputs / dynamical-matrix
files (parsed by :mod:`phonjax.io.qe`), into a validated :class:`~phonjax.born.Born` for a primitive cell.

phonopy ``BORN``: line 1 unit factor e²/(4πε0) in eV·Å (a non-number: ``units.COULOMB_EV_A``), optional G
cutoff and Λ after it; line 2 the nine components of ε∞; then nine components of Z*[E, u] per
symmetry-independent atom of the given primitive cell (expanded by spglib symmetry operations, as phonopy
does), or per atom of the primitive cell (``--nosym`` files), or per atom / independent atom of a conventional
``unitcell`` given by the caller, mapped to the primitive atoms by position.
QE: the last ε∞ and Z* blocks of a ph.x output or dynamical-matrix file; atoms matched to the primitive cell by
position (:func:`phonjax.io.structure.match_atoms`) when the file lists them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from phonjax import units
from phonjax.born import (MAX_NEUTRALITY_CORRECTION, Born, BornAtomCountError, BornError, expand_by_symmetry,
                          independent_atoms)
from phonjax.io.structure import AtomMatchError, match_atoms
from phonjax.structure import Crystal

__all__ = ["read_born", "read_phonopy_born", "read_qe_born", "born_text", "write_born"]


def _map_atoms(prim: Crystal, positions, numbers=None) -> np.ndarray:
    """Index of the file's atom at each primitive atom's position (modulo the primitive lattice)."""
    try:
        return match_atoms(prim.positions, positions, prim.cell, query_numbers=None if numbers is None else prim.numbers,
                           numbers=numbers)
    except AtomMatchError as e:
        raise BornError(f"the atoms of the primitive cell do not match the atoms of the Born file ({e})") from None


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
        z = zu[_map_atoms(prim, uc.positions, uc.numbers)]
    else:
        raise BornAtomCountError(
            f"{path}: {nz} Z* entries, but the primitive cell has {prim.n_atoms} atoms ({len(ind)} independent); "
            "pass unitcell= if the file belongs to a conventional cell")
    return Born.from_arrays(z, eps, factor=factor, enforce_neutrality=enforce_neutrality,
                            max_correction=max_correction, source=str(path))


def read_qe_born(path, atoms, *, enforce_neutrality: bool = True, max_correction: float = MAX_NEUTRALITY_CORRECTION,
                 map_by_position: bool = True) -> Born:
    """Read ε∞ and Z* from a QE ``ph.x`` output (``epsil``/``zeu``) or a ph.x dynamical-matrix file
    (:func:`phonjax.io.qe.parse_ph_dielectric` / :func:`~phonjax.io.qe.parse_dyn_dielectric`). Atoms are matched
    to ``atoms`` by position when the file states positions (alat from its header)."""
    from phonjax.io.qe import (QEOutputError, dielectric_positions, parse_dyn_dielectric,  # noqa: PLC0415
                               parse_ph_dielectric)

    prim = Crystal.coerce(atoms)
    path = Path(path)
    text = path.read_text()
    dyn = "Dielectric Tensor:" in text
    try:
        eps, z = parse_dyn_dielectric(text) if dyn else parse_ph_dielectric(text)
    except QEOutputError as e:
        raise BornError(f"{path}: {e}") from None
    if z.shape[0] != prim.n_atoms:
        raise BornAtomCountError(f"{path}: {z.shape[0]} atoms with Z*, primitive cell has {prim.n_atoms}")
    qe_pos = dielectric_positions(text) if map_by_position else None
    if qe_pos is not None and len(qe_pos) == prim.n_atoms:
        z = z[_map_atoms(prim, qe_pos)]
    return Born.from_arrays(z, eps, factor=units.COULOMB_EV_A, enforce_neutrality=enforce_neutrality,
                            max_correction=max_correction, source=str(path))


def read_born(path, atoms, *, unitcell=None, fmt: str = "auto", symprec: float = 1e-5,
              enforce_neutrality: bool = True, max_correction: float = MAX_NEUTRALITY_CORRECTION) -> Born:
    """Read Born charges and ε∞ for the primitive cell ``atoms`` from a phonopy BORN or a QE file.

    fmt: "auto" (QE when the file contains QE's dielectric markers, else phonopy BORN), "phonopy" or "qe".
    See :func:`read_phonopy_born` and :func:`read_qe_born`.
    """
    path = Path(path)
    if not path.is_file():
        raise BornError(f"Born file not found: {path}")
    if fmt == "auto":
        from phonjax.io.qe import has_dielectric  # noqa: PLC0415
        fmt = "qe" if has_dielectric(path.read_text()) else "phonopy"
    if fmt == "phonopy":
        return read_phonopy_born(path, atoms, unitcell=unitcell, symprec=symprec,
                                 enforce_neutrality=enforce_neutrality, max_correction=max_correction)
    if fmt == "qe":
        return read_qe_born(path, atoms, enforce_neutrality=enforce_neutrality, max_correction=max_correction)
    raise BornError(f"unknown Born file format {fmt!r} (auto, phonopy, qe)")


def born_text(epsilon, zstar, factor: float = units.COULOMB_EV_A, *, crystal: Crystal | None = None,
              symprec: float = 1e-5) -> str:
    """phonopy BORN text: unit factor e²/(4πε0) in eV·Å, ε∞ (9 numbers), then Z*[E, u] (9 each) of the
    symmetry-independent atoms of ``crystal`` (phonopy's layout, which its parser requires when atoms are
    equivalent; :func:`read_phonopy_born` expands them back by symmetry), or of every atom without ``crystal``.
    No comment lines: phonopy's parser reads line 1 as the factor and line 2 as ε∞."""
    z = np.asarray(zstar, dtype=np.float64)
    if crystal is not None:
        z = z[independent_atoms(crystal, symprec)]
    lines = [f"{float(factor):.6f}"]
    lines.append(" ".join(f"{x:.8f}" for x in np.asarray(epsilon).ravel()))
    lines += [" ".join(f"{x:.8f}" for x in zi.ravel()) for zi in z]
    return "\n".join(lines) + "\n"


def write_born(path, born: Born, crystal: Crystal | None = None) -> Path:
    """Write ``born`` as a phonopy BORN file (:func:`born_text`, its own factor; with ``crystal``, the primitive
    cell the charges belong to, only its symmetry-independent atoms, as phonopy writes them); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(born_text(born.epsilon, born.zstar, born.factor, crystal=crystal))
    return path
