"""Interoperability with phonopy: ``from_phonopy`` / ``to_phonopy`` and ``force_constants.hdf5``
(phonopy's ``band.yaml``: :mod:`phonjax.io.band_yaml`).

Mapping: phonopy's primitive cell becomes our primitive :class:`~phonjax.structure.Crystal` (same atoms, same
order, phonopy's masses); its supercell becomes ``make_supercell(primitive, M)`` with the integer matrix
M = round(supercell.cell @ inv(primitive.cell)) (phonopy's supercell may be built from a conventional cell with
a primitive_matrix; M is then a general 3×3 matrix). Atoms are matched by position modulo the supercell
lattice (:func:`phonjax.io.structure.match_atoms`); a home-cell atom whose phonopy representative sits one primitive lattice vector away is handled by
translating the whole row (force constants depend on relative positions only). phonopy's supercell matrix is the
transpose of ours (phonopy: columns of the lattice matrix; we: rows).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from phonjax.force_constants import ForceConstants
from phonjax.io.structure import AtomMatchError, match_atoms
from phonjax.structure import Crystal, Supercell, make_supercell

__all__ = ["from_phonopy", "to_phonopy", "write_force_constants_hdf5", "read_force_constants_hdf5",
           "PhonopyIOError"]


class PhonopyIOError(ValueError):
    """A phonopy object/file cannot be mapped onto phonjax's force constants."""


def _match(query: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Index into ``positions`` of each ``query`` point modulo the lattice ``cell`` (Cartesian, Å), one-to-one."""
    try:
        return match_atoms(query, positions, cell)
    except AtomMatchError as e:
        raise PhonopyIOError(f"atoms of the two supercells do not coincide ({e})") from None


def _row_maps(sc: Supercell, ph_sc_pos: np.ndarray, ph_sc_numbers: np.ndarray, ph_p2s: np.ndarray):
    """For each home atom i: (phonopy row k, permutation perm (ns,) with our s ↔ phonopy perm[s])."""
    prim = sc.primitive
    L = sc.crystal.cell
    rows = _match(prim.positions, ph_sc_pos[ph_p2s], prim.cell)  # primitive-lattice equivalence
    maps = []
    for i, k in enumerate(rows):
        if ph_sc_numbers[ph_p2s[k]] != prim.numbers[i]:
            raise PhonopyIOError("species differ between phonopy's primitive cell and ours")
        delta = ph_sc_pos[ph_p2s[k]] - prim.positions[i]
        perm = _match(sc.crystal.positions + delta, ph_sc_pos, L)
        maps.append((int(k), perm))
    return maps


def _crystal_from_phonopy_atoms(a) -> Crystal:
    cell = np.asarray(a.cell, dtype=np.float64)
    return Crystal(cell, np.asarray(a.scaled_positions) @ cell, np.asarray(a.numbers), np.asarray(a.masses))


def _supercell_matrix(sc_cell, prim_cell) -> np.ndarray:
    Mf = np.asarray(sc_cell) @ np.linalg.inv(np.asarray(prim_cell))
    M = np.round(Mf).astype(np.int64)
    if np.abs(Mf - M).max() > 1e-6:
        raise PhonopyIOError("phonopy's supercell is not an integer multiple of its primitive cell")
    return M


def from_phonopy(obj, *, force_sets=None, born_file=None, born=None, is_nac: bool = True, qspace_asr: bool = False,
                 symmetrize_fc: bool = True) -> ForceConstants:
    """ForceConstants from a ``phonopy.Phonopy`` object or a phonopy yaml (``phonopy_params.yaml`` /
    ``phonopy_disp.yaml`` + ``force_sets`` FORCE_SETS, optional ``born_file`` BORN read by phonopy; a
    FORCE_SETS / BORN beside a yaml that has no force constants / NAC parameters are used automatically).

    Force constants are produced from the displacement dataset when the object has none (phonopy's default
    symmetrisation, ``symmetrize_fc``). NAC parameters (phonopy's ``nac_params``, e.g. from a BORN file next to
    the yaml) become ``born`` unless ``born`` is given or ``is_nac`` is False. ``qspace_asr`` (default False)
    keeps phonopy's frequencies exactly; set True for the Eq. 14 correction.
    """
    import phonopy

    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.is_file():
            raise FileNotFoundError(f"phonopy file not found: {path}")
        text = path.read_text(errors="replace")
        has_fc = any(line.startswith("force_constants:") for line in text.splitlines())
        if force_sets is None and not has_fc and "forces:" not in text and (path.parent / "FORCE_SETS").is_file():
            force_sets = path.parent / "FORCE_SETS"  # phonopy_disp.yaml next to its FORCE_SETS
        if born_file is None and is_nac and "born_effective_charge" not in text and (path.parent / "BORN").is_file():
            born_file = path.parent / "BORN"
        kw = {"force_sets_filename": str(force_sets)} if force_sets is not None else {}
        if born_file is not None:
            kw["born_filename"] = str(born_file)
        try:
            phonon = phonopy.load(str(path), is_nac=is_nac, symmetrize_fc=symmetrize_fc, log_level=0, **kw)
        except Exception as e:  # phonopy raises many types for bad files
            raise PhonopyIOError(f"{path}: phonopy could not load it ({type(e).__name__}: {e})") from None
    else:
        phonon = obj
        if not hasattr(phonon, "primitive") or not hasattr(phonon, "supercell"):
            raise PhonopyIOError(f"expected a phonopy.Phonopy or a path, got {type(obj).__name__}")
    if phonon.force_constants is None:
        if phonon.dataset is None:
            raise PhonopyIOError("phonopy object has neither force constants nor a displacement dataset")
        phonon.produce_force_constants()
        if symmetrize_fc:
            phonon.symmetrize_force_constants()
    prim = _crystal_from_phonopy_atoms(phonon.primitive)
    ph_sc = phonon.supercell
    M = _supercell_matrix(ph_sc.cell, prim.cell)
    sc = make_supercell(prim, M)
    fc_ph = np.asarray(phonon.force_constants, dtype=np.float64)
    p2s = np.asarray(phonon.primitive.p2s_map)
    ns = len(ph_sc.numbers)
    if fc_ph.shape[0] == ns:
        fc_ph = fc_ph[p2s]
    if fc_ph.shape != (len(p2s), ns, 3, 3):
        raise PhonopyIOError(f"unexpected phonopy force-constant shape {fc_ph.shape}")
    ph_pos = np.asarray(ph_sc.scaled_positions) @ np.asarray(ph_sc.cell)
    fc = np.empty((prim.n_atoms, ns, 3, 3))
    for i, (k, perm) in enumerate(_row_maps(sc, ph_pos, np.asarray(ph_sc.numbers), p2s)):
        fc[i] = fc_ph[k, perm]
    if born is None and is_nac and phonon.nac_params is not None:
        from phonjax.born import Born
        nac = phonon.nac_params
        factor = nac.get("factor")
        born = Born.from_arrays(nac["born"], nac["dielectric"], source="phonopy nac_params",
                                **({"factor": float(factor)} if factor is not None else {}))
    return ForceConstants(sc, fc, born, None, qspace_asr)


def to_phonopy(fcobj: ForceConstants, *, with_nac: bool = True, symmetry: bool = True):
    """``phonopy.Phonopy`` (unit cell = our primitive, supercell_matrix = Mᵀ) with compact force constants in
    phonopy's supercell order, and ``nac_params`` from ``fcobj.born`` (factor = unit, as phonopy's setter).
    ``symmetry=False`` skips phonopy's symmetry search (``is_symmetry=False``; 75 s for a 2662-atom supercell),
    enough for writing and reading force-constant files."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    prim = fcobj.primitive
    unit = PhonopyAtoms(numbers=prim.numbers.tolist(), cell=prim.cell, scaled_positions=prim.scaled_positions,
                        masses=prim.masses)
    phonon = Phonopy(unit, supercell_matrix=fcobj.supercell.matrix.T, primitive_matrix=np.eye(3), log_level=0,
                     is_symmetry=symmetry)
    ph_sc = phonon.supercell
    p2s = np.asarray(phonon.primitive.p2s_map)
    ph_pos = np.asarray(ph_sc.scaled_positions) @ np.asarray(ph_sc.cell)
    out = np.zeros((len(p2s), len(ph_sc.numbers), 3, 3))
    for i, (k, perm) in enumerate(_row_maps(fcobj.supercell, ph_pos, np.asarray(ph_sc.numbers), p2s)):
        out[k, perm] = fcobj.fc[i]
    phonon.force_constants = out
    if with_nac and fcobj.born is not None:
        phonon.nac_params = fcobj.born.to_phonopy_nac_params()
    return phonon


def write_force_constants_hdf5(fcobj: ForceConstants, path) -> Path:
    """phonopy's ``force_constants.hdf5`` (compact (n_prim, n_super, 3, 3), ``p2s_map``, phonopy's supercell
    order for unit cell = our primitive and supercell_matrix = Mᵀ); read it with phonopy's
    ``read_force_constants_hdf5`` or ``phonopy.load(..., force_constants_filename=...)``."""
    from phonopy.file_IO import write_force_constants_to_hdf5

    phonon = to_phonopy(fcobj, with_nac=False, symmetry=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_force_constants_to_hdf5(phonon.force_constants, filename=str(path), p2s_map=phonon.primitive.p2s_map,
                                  physical_unit="eV/angstrom^2")
    return path


def read_force_constants_hdf5(path, primitive, supercell_matrix, *, born=None) -> ForceConstants:
    """Inverse of :func:`write_force_constants_hdf5` for a given primitive cell and supercell matrix M."""
    from phonopy.file_IO import read_force_constants_hdf5 as _read

    from phonjax.structure import supercell_matrix as _smat

    sc = make_supercell(Crystal.coerce(primitive), _smat(supercell_matrix))
    fcobj0 = ForceConstants(sc, np.zeros((sc.primitive.n_atoms, sc.crystal.n_atoms, 3, 3)))
    phonon = to_phonopy(fcobj0, with_nac=False, symmetry=False)
    phonon.force_constants = _read(str(path))
    return from_phonopy(phonon, born=born, is_nac=False)
