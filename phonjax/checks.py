"""Input checks run before (or around) a phonon job: each returns what it found (or raises ``ValueError`` with
one line) so the caller decides whether to warn, record it in summary.json, or stop.

* :func:`reduce_to_primitive` — a conventional / non-primitive cell → its primitive cell (spglib), in the same
  Cartesian frame, with the supercell matrix translated so the supercell is the one asked for.
* :func:`born_neutrality_note` — the charge-neutrality correction applied to Born charges, when it is large.
* :func:`polar_without_born` — a compound that likely has polar optical modes but no Born data.
* :func:`check_reference` — a band.yaml that cannot serve as a reference (all zero, non-finite, wrong branches).

:data:`USER_ERRORS`: the exception types a bad input raises (one line each), which the CLI turns into
``phonjax: error: ...`` and a many-structure run records as that structure's failure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phonjax.structure import Crystal

__all__ = ["InputNote", "PrimitiveReduction", "reduce_to_primitive", "NEUTRALITY_WARN_E", "born_neutrality_note",
           "neutrality_message", "polar_without_born", "polar_message", "check_reference",
           "check_reference_file", "primitive_for_job", "born_notes", "USER_ERRORS"]

#: Exceptions that mean "bad input" (a one-line message), not a bug.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, RuntimeError)

#: Per-atom charge-neutrality corrections of Born charges above this (e) are reported (warning + summary.json).
NEUTRALITY_WARN_E = 1e-3

#: Non-metallic and metalloid elements (atomic numbers). A compound holding one of them next to another element
#: is treated as possibly polar (ionic/covalent-polar optical modes with Born charges); all-metal compounds
#: (intermetallics, alloys) and elemental crystals are not.
_NONMETALS = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 33, 34, 35, 36, 51, 52, 53, 54, 85, 86})


class InputNote(UserWarning):
    """How an input was interpreted (e.g. reduced to its primitive cell): information, not a fault."""


@dataclass(frozen=True, eq=False)
class PrimitiveReduction:
    """A cell reduced to its primitive cell. input_atoms/primitive_atoms: atom counts; to_input: (3, 3) int T
    with ``input.cell = T @ primitive.cell`` (Å, rows); primitive: the :class:`Crystal` (same Cartesian frame and
    origin as the input, atoms in order of first appearance, each at an input atom's position)."""

    primitive: Crystal
    to_input: np.ndarray
    input_atoms: int
    primitive_atoms: int

    def supercell_for(self, supercell) -> np.ndarray | None:
        """The (3, 3) matrix M_p over the primitive cell of the supercell ``supercell`` (N, 3 ints or 3×3) of
        the *input* cell: M_p = M · T (None stays None)."""
        if supercell is None:
            return None
        from phonjax.structure import supercell_matrix
        return supercell_matrix(supercell) @ self.to_input

    def as_dict(self) -> dict:
        return {"input_atoms": self.input_atoms, "primitive_atoms": self.primitive_atoms,
                "input_cell_over_primitive": self.to_input.tolist()}


def reduce_to_primitive(crystal: Crystal, symprec: float = 1e-5) -> PrimitiveReduction | None:
    """The primitive cell of ``crystal`` when it is smaller (a conventional or supercell input), else None.

    spglib's primitive lattice without idealisation (no rotation: Born tensors and q-directions keep their
    Cartesian meaning); the atoms are those of the input, one per lattice-translation class, wrapped into the
    primitive cell. Masses are kept per atom.
    """
    import spglib

    cell = (crystal.cell, crystal.scaled_positions, crystal.numbers)
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=True, symprec=symprec)
    if std is None or len(std[2]) >= crystal.n_atoms:
        return None
    lat = np.asarray(std[0], dtype=np.float64)
    if np.linalg.det(lat) < 0:
        lat = -lat
    t = crystal.cell @ np.linalg.inv(lat)
    T = np.round(t).astype(np.int64)
    if np.abs(t - T).max() > 1e-4 or int(round(abs(np.linalg.det(T)))) * len(std[2]) != crystal.n_atoms:
        return None  # not a sublattice in the input's frame: leave the cell as given
    frac = crystal.positions @ np.linalg.inv(lat)
    keep, seen = [], []
    for k, f in enumerate(frac):
        w = f - np.floor(f)
        if not any(crystal.numbers[j] == crystal.numbers[k] and _same_mod1(w, s) for j, s in seen):
            keep.append(k)
            seen.append((k, w))
    if len(keep) != len(std[2]):
        return None
    wrapped = np.array([s for _, s in seen]) @ lat
    prim = Crystal(lat, wrapped, crystal.numbers[keep], crystal.masses[keep])
    return PrimitiveReduction(prim, T, crystal.n_atoms, prim.n_atoms)


def _same_mod1(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> bool:
    d = a - b
    return bool(np.abs(d - np.round(d)).max() < tol)


def born_neutrality_note(born) -> dict | None:
    """{'per_atom_correction_e', 'charge_sum_e', 'source'} when the neutrality correction applied to ``born``
    exceeds :data:`NEUTRALITY_WARN_E` (per atom, largest Cartesian component), else None. The charge sum is
    the largest |component| of Σ_k Z*_k before the correction (= n_atoms × the per-atom correction)."""
    corr = float(getattr(born, "neutrality_correction", 0.0) or 0.0)
    if born is None or corr <= NEUTRALITY_WARN_E:
        return None
    return {"per_atom_correction_e": corr, "charge_sum_e": corr * born.n_atoms, "source": str(born.source)}


def neutrality_message(note: dict) -> str:
    return (f"Born charges in {note['source']} are not neutral (max |sum Z*| = {note['charge_sum_e']:.3g} e); "
            f"subtracted {note['per_atom_correction_e']:.3g} e per atom (simple sum rule) — check the file")


def polar_without_born(crystal: Crystal) -> bool:
    """True when ``crystal`` has optical modes (≥ 2 atoms) and is a compound with a non-metal or metalloid
    (LiF, MgO, GaAs, SiC): its optical modes are then likely polar, and without Born charges no LO–TO
    splitting can be applied."""
    species = set(int(z) for z in crystal.numbers)
    return crystal.n_atoms >= 2 and len(species) >= 2 and bool(species & _NONMETALS)


def polar_message(crystal: Crystal) -> str:
    import math
    symbols = crystal.symbols
    order = list(dict.fromkeys(symbols))
    counts = [symbols.count(x) for x in order]
    g = math.gcd(*counts)
    formula = "".join(x + (str(c // g) if c // g > 1 else "") for x, c in zip(order, counts))
    return (f"no Born charges: if {formula} is an insulator its polar optical modes lack LO–TO splitting "
            "(give --born BORN, e.g. from `phonjax dfpt STRUCTURE`)")


def check_reference(ref, n_branches: int, path) -> None:
    """Raise ``ValueError`` (one line) when the band data ``ref`` (BandData) cannot be compared with a dispersion
    of ``n_branches`` branches: no q-points, non-finite or all-zero frequencies, another branch count."""
    f = np.asarray(ref.frequencies, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"reference {path}: no q-points with frequencies")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"reference {path}: frequencies contain NaN/inf")
    if np.abs(f).max() < 1e-6:
        raise ValueError(f"reference {path}: all frequencies are zero — not a computed dispersion")
    if f.shape[1] != n_branches:
        raise ValueError(f"reference {path} has {f.shape[1]} branches, the primitive cell {n_branches} "
                         "(a band.yaml of another cell or material?)")


def check_reference_file(reference, n_branches: int) -> None:
    """Read and validate a reference band.yaml before any computing (one-line ValueError when unusable; None:
    nothing to check)."""
    if reference is None:
        return
    from phonjax.compare import read_band_yaml
    check_reference(read_band_yaml(reference), n_branches, reference)


# ---------------------------------------------------------------------------------------------------------
# what a phonon job (phonjax.predict) does with these findings
def primitive_for_job(crystal: Crystal, supercell, name: str, primitive: bool):
    """(crystal, supercell, unitcell, extra) for a job on ``crystal``: with ``primitive``, a non-primitive cell is
    replaced by its primitive cell, the supercell spec (over the input cell) translated to it (the same
    supercell), an :class:`InputNote` warned and ``extra = {"primitive_reduction": ...}`` for summary.json;
    ``unitcell`` is then the input cell (a Born file may list its atoms), else None."""
    import warnings

    red = reduce_to_primitive(crystal) if primitive else None
    if red is None:
        return crystal, supercell, None, {}
    sc = red.supercell_for(supercell)
    warnings.warn(f"{name} is not a primitive cell ({red.input_atoms} atoms): using its {red.primitive_atoms}-atom "
                  "primitive cell (spglib, same Cartesian frame)"
                  + ("" if sc is None else f", supercell {sc.tolist()} of it (the same supercell)")
                  + "; --no-primitive keeps the cell as given (folded bands)", InputNote, stacklevel=3)
    info = red.as_dict()
    if sc is not None:
        info["supercell_matrix_input"] = np.asarray(supercell).tolist()
    return red.primitive, sc, crystal, {"primitive_reduction": info}


def born_notes(born, crystal: Crystal, lr: str) -> dict:
    """summary.json entries (and ``warnings.warn``) about the Born data a job uses: a neutrality correction above
    :data:`NEUTRALITY_WARN_E` (``born_neutrality_correction``), or none for a polar-looking compound while the
    long-range mode was left to ``auto`` (``long_range_warning``: no LO–TO splitting)."""
    import warnings

    notes = {}
    neutral = born_neutrality_note(born)
    if neutral is not None:
        warnings.warn(neutrality_message(neutral), stacklevel=3)
        notes["born_neutrality_correction"] = neutral
    if born is None and lr == "auto" and polar_without_born(crystal):
        msg = polar_message(crystal)
        warnings.warn(msg, stacklevel=3)
        notes["long_range_warning"] = msg
    return notes
