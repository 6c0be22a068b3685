"""Dipole-subtracted ("short-range") labels and models: the harmonic dipole–dipole part of a labelled structure.

A training structure is a rattled, homogeneously strained supercell ``M`` of a reference primitive cell. Its
harmonic dipole–dipole part, for Born charges Z* and ε∞ (:class:`~phonjax.born.Born`) of the primitive cell:

* sites: the reference supercell's atoms (``make_supercell(primitive, M)``) at the same *fractional*
  coordinates in the structure's own cell (the sites strain with the cell);
* u (N, 3) Å: the minimum-image displacement of each atom from its site (atoms are mapped to the nearest site
  of their species; the map must be one-to-one);
* Φ_dd (N, N, 3, 3) eV/Å²: the Λ-independent Ewald dipole force constants of the periodic supercell in the
  structure's cell (:func:`phonjax.longrange.supercell.ewald_supercell_fc` of ``make_supercell(P', M)``, where
  the strained primitive P' has cell ``primitive.cell @ D`` with D = (M·cell₀)⁻¹·cell, so that its supercell
  ``M`` is exactly the structure's cell). Φ_dd obeys the acoustic sum rule, so a rigid translation costs nothing;
* E_dd = ½ uᵀ Φ_dd u (eV), F_dd = −Φ_dd u (eV/Å);
* σ_dd (3, 3) eV/Å³, ASE's sign convention σ = (1/V) ∂E/∂ε: the derivative of E_dd with respect to a
  homogeneous symmetric strain ε applied to the cell and to u (u → u(1+ε)), by forward finite differences of
  the Ewald energy (one Ewald sum per strain component, step 1e-6: |tr(σ)V + E| ≈ 3e-5 |E|; ``central=True``
  with step 1e-4: ≈ 5e-7 |E|), **Z* and ε∞ held fixed** (their strain dependence is
  left in the short-range remainder). Check: Φ_dd is homogeneous of degree −3 in length, so tr(σ_dd)·V = −E_dd.

The short-range labels are the DFT labels minus (E_dd, F_dd, σ_dd); a model trained on them is recorded as
``metadata["long_range"] = {"kind": "dipole_subtracted", ...}`` (:func:`long_range_record`), and prediction
adds the full C_dd(q) back (``lr='ewald'``: nothing is subtracted from its force constants).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phonjax import units
from phonjax.born import Born, BornError
from phonjax.structure import Crystal, make_supercell, supercell_matrix

__all__ = ["KIND", "DipoleLabelError", "DipoleLabels", "infer_supercell_matrix", "strained_primitive",
           "map_to_sites", "dipole_fc_in_cell", "dipole_labels", "long_range_record", "is_short_range",
           "born_from_record"]

#: ``metadata["long_range"]["kind"]`` of a model trained on dipole-subtracted labels.
KIND = "dipole_subtracted"
#: Default largest displacement from a site, as a fraction of the nearest-neighbour site distance.
MAX_DISPLACEMENT_FRACTION = 0.35
#: largest |D − 1| of a frame's cell against its reference supercell before it counts as 'not that supercell'
MAX_STRAIN = 0.1
#: Default forward finite-difference strain step for σ_dd.
STRAIN_STEP = 1e-6


class DipoleLabelError(ValueError):
    """A structure cannot be described as a displaced supercell of the reference cell."""


@dataclass(frozen=True, eq=False)
class DipoleLabels:
    """Harmonic dipole–dipole part of one structure (arrays read-only, in the structure's atom order).

    energy eV; forces (n, 3) eV/Å; stress (3, 3) eV/Å³ (ASE sign) or None when not computed;
    displacements (n, 3) Å from the sites; sites (n,) index of each atom's site in ``make_supercell(prim, M)``;
    supercell_matrix (3, 3) int; deformation (3, 3): cell = M @ prim.cell @ deformation.
    """

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    displacements: np.ndarray
    sites: np.ndarray
    supercell_matrix: np.ndarray
    deformation: np.ndarray

    @property
    def max_displacement(self) -> float:
        return float(np.linalg.norm(self.displacements, axis=1).max())


def _ro(a, dtype=np.float64) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


def _matrix(value) -> np.ndarray:
    """:func:`phonjax.structure.supercell_matrix`, its errors as DipoleLabelError."""
    try:
        return supercell_matrix(value)
    except ValueError as e:
        raise DipoleLabelError(str(e)) from None


def _deformation(prim: Crystal, M: np.ndarray, cell: np.ndarray, max_strain: float) -> np.ndarray:
    """D with ``cell = M @ prim.cell @ D``; error when |D − 1| > ``max_strain`` (cell is not that supercell)."""
    D = np.linalg.solve(M @ prim.cell, cell)
    dev = float(np.abs(D - np.eye(3)).max())
    if dev > max_strain:
        raise DipoleLabelError(f"cell is not the supercell {M.tolist()} of the reference primitive cell "
                               f"(deformation {dev:.3g} > {max_strain})")
    return D


def infer_supercell_matrix(primitive, cell, *, max_strain: float = MAX_STRAIN) -> np.ndarray:
    """The integer M with ``cell ≈ M @ primitive.cell`` (rounded); error when the residual deformation
    |D − 1| exceeds ``max_strain``. (3, 3) int."""
    prim = Crystal.coerce(primitive)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    M = np.rint(cell @ np.linalg.inv(prim.cell)).astype(np.int64)
    if round(np.linalg.det(M)) <= 0:
        raise DipoleLabelError("cell is not a supercell of the reference primitive cell (no integer matrix fits)")
    _deformation(prim, M, cell, max_strain)
    return M


def strained_primitive(primitive, deformation) -> Crystal:
    """The primitive cell with cell ``primitive.cell @ deformation`` and the same fractional coordinates."""
    prim = Crystal.coerce(primitive)
    cell = prim.cell @ np.asarray(deformation, dtype=np.float64).reshape(3, 3)
    return Crystal(cell, prim.scaled_positions @ cell, prim.numbers, prim.masses)


def map_to_sites(positions, numbers, cell, site_frac, site_numbers, *,
                 max_fraction: float = MAX_DISPLACEMENT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(sites (n,), displacements (n, 3) Å): each atom's nearest site of its species in ``cell`` (sites at
    fractional ``site_frac`` (n, 3)) and its minimum-image displacement from it.

    Errors (:class:`DipoleLabelError`): atom count or composition differs from the sites; an atom further than
    ``max_fraction`` × the nearest-neighbour site distance from every site of its species; two atoms on one site.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    num = np.asarray(numbers, dtype=np.int64).reshape(-1)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    sfrac = np.asarray(site_frac, dtype=np.float64).reshape(-1, 3)
    snum = np.asarray(site_numbers, dtype=np.int64).reshape(-1)
    if len(pos) != len(sfrac):
        raise DipoleLabelError(f"structure has {len(pos)} atoms, the reference supercell has {len(sfrac)}")
    if sorted(num.tolist()) != sorted(snum.tolist()):
        from ase.data import chemical_symbols as cs
        comp = lambda z: dict(zip(*[[cs[int(k)] for k in np.unique(z)], np.unique(z, return_counts=True)[1].tolist()]))  # noqa: E731
        raise DipoleLabelError(f"composition {comp(num)} differs from the reference supercell's {comp(snum)}")
    # nearest-neighbour distance between distinct sites (minimum image), the scale of 'too large'
    ds = sfrac[None, :, :] - sfrac[:, None, :]
    ds -= np.round(ds)
    dd = np.linalg.norm(ds @ cell, axis=-1)
    np.fill_diagonal(dd, np.inf)
    d_nn = float(dd.min()) if len(sfrac) > 1 else float(np.linalg.norm(cell, axis=1).min())
    frac = pos @ np.linalg.inv(cell)
    d = frac[:, None, :] - sfrac[None, :, :]
    d -= np.round(d)
    dist = np.linalg.norm(d @ cell, axis=-1)
    dist = np.where(num[:, None] == snum[None, :], dist, np.inf)
    sites = np.argmin(dist, axis=1)
    best = dist[np.arange(len(pos)), sites]
    worst = int(np.argmax(best))
    if best[worst] > max_fraction * d_nn:
        raise DipoleLabelError(f"atom {worst} is {best[worst]:.3g} Å from the nearest reference site "
                               f"(> {max_fraction} × nearest-neighbour distance {d_nn:.3g} Å): displacement too "
                               "large, or the structure is not a supercell of the reference")
    if len(np.unique(sites)) != len(sites):
        raise DipoleLabelError("two atoms map onto the same reference site (displacements too large)")
    u = d[np.arange(len(pos)), sites] @ cell
    return sites, u


def _check_born(primitive: Crystal, born: Born) -> None:
    if not isinstance(born, Born):
        raise BornError(f"born must be a phonjax Born object, got {type(born).__name__}")
    if born.n_atoms != primitive.n_atoms:
        raise BornError(f"Born charges for {born.n_atoms} atoms, the reference primitive cell has {primitive.n_atoms}")


def _site_fc(primitive: Crystal, born: Born, M: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Full Ewald Φ_dd (N, N, 3, 3) in site order for the supercell M of ``primitive`` strained onto ``cell``."""
    from phonjax.longrange.supercell import ewald_supercell_fc
    D = np.linalg.solve(M @ primitive.cell, cell)
    return ewald_supercell_fc(make_supercell(strained_primitive(primitive, D), M), born)


def _resolve(primitive, born, supercell_matrix, cell):
    prim = Crystal.coerce(primitive)
    _check_born(prim, born)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    M = infer_supercell_matrix(prim, cell) if supercell_matrix is None else _matrix(supercell_matrix)
    return prim, cell, M, _deformation(prim, M, cell, MAX_STRAIN)


def dipole_fc_in_cell(positions, numbers, cell, primitive, born: Born, supercell_matrix=None, *,
                      max_fraction: float = MAX_DISPLACEMENT_FRACTION) -> np.ndarray:
    """Ewald Φ_dd (n, n, 3, 3) eV/Å² of a structure's periodic cell, rows/columns in the structure's atom order
    (e.g. to subtract from reference force constants of a supercell whose atoms phonopy ordered)."""
    prim, cell, M, _ = _resolve(primitive, born, supercell_matrix, cell)
    ref = make_supercell(prim, M).crystal
    sites, _ = map_to_sites(positions, numbers, cell, ref.scaled_positions, ref.numbers, max_fraction=max_fraction)
    phi = _site_fc(prim, born, M, cell)
    return phi[np.ix_(sites, sites)]


def _energy(phi, u):
    return 0.5 * float(np.einsum("sa,stab,tb->", u, phi, u))


def dipole_labels(positions, numbers, cell, primitive, born: Born, supercell_matrix=None, *, stress: bool = True,
                  strain_step: float = STRAIN_STEP, central: bool = False,
                  max_fraction: float = MAX_DISPLACEMENT_FRACTION) -> DipoleLabels:
    """Harmonic dipole–dipole energy, forces and (``stress=True``) stress of one structure (see module doc).

    positions (n, 3) Å, numbers (n,), cell (3, 3) Å rows; primitive: the reference primitive cell (Born's
    atom order); supercell_matrix: N, 3 ints, 3×3 or None (inferred by rounding cell·prim.cell⁻¹).
    Stress: forward differences with ``strain_step`` (6 extra Ewald sums), or central (12).
    """
    prim, cell, M, D = _resolve(primitive, born, supercell_matrix, cell)
    ref = make_supercell(prim, M).crystal
    sites, u = map_to_sites(positions, numbers, cell, ref.scaled_positions, ref.numbers, max_fraction=max_fraction)
    us = np.zeros_like(u)
    us[sites] = u  # site order
    phi = _site_fc(prim, born, M, cell)
    f_sites = -np.einsum("stab,tb->sa", phi, us)
    energy = -0.5 * float(np.sum(f_sites * us))
    sig = None
    if stress:
        vol = abs(np.linalg.det(cell))
        h = float(strain_step)
        sig = np.zeros((3, 3))

        def e_strained(eps):
            defo = np.eye(3) + eps
            return _energy(_site_fc(prim, born, M, cell @ defo), us @ defo)

        for a in range(3):
            for b in range(a, 3):
                eps = np.zeros((3, 3))
                eps[a, b] = eps[b, a] = h
                if central:
                    de = (e_strained(eps) - e_strained(-eps)) / (2 * h)
                else:
                    de = (e_strained(eps) - energy) / h
                sig[a, b] = sig[b, a] = de / vol / (1.0 if a == b else 2.0)
    return DipoleLabels(energy, _ro(f_sites[sites]), None if sig is None else _ro(sig), _ro(u),
                        _ro(sites, np.int64), _ro(M, np.int64), _ro(D))


# ---------------------------------------------------------------------------------------------------------
# the model record
# ---------------------------------------------------------------------------------------------------------
def long_range_record(born: Born, primitive, *, born_file: str | None = None, reference: str | None = None,
                      supercell_matrix=None, stored_born: str | None = "BORN") -> dict:
    """``metadata["long_range"]`` of a model trained on dipole-subtracted labels (JSON-serialisable)."""
    prim = Crystal.coerce(primitive)
    return {"kind": KIND,
            "born": {"epsilon": np.asarray(born.epsilon).tolist(), "born_charges": np.asarray(born.zstar).tolist(),
                     "factor": born.factor, "neutrality_correction": born.neutrality_correction,
                     "source": born.source},
            "source": born_file, "born_file": stored_born, "reference": reference,
            "reference_primitive": {"cell": prim.cell.tolist(), "scaled_positions": prim.scaled_positions.tolist(),
                                    "numbers": prim.numbers.tolist()},
            "supercell_matrix": None if supercell_matrix is None else _matrix(supercell_matrix).tolist(),
            "prediction": "add the full Ewald C_dd(q) (lr='ewald'); nothing to subtract",
            "stress": "Z* and eps_inf held fixed under strain"}


def is_short_range(metadata) -> bool:
    rec = (metadata or {}).get("long_range") if isinstance(metadata, dict) else None
    return isinstance(rec, dict) and rec.get("kind") == KIND


def born_from_record(record: dict, crystal, model_dir=None) -> Born:
    """The model's Born data for ``crystal``: the model directory's Born file read for this cell (symmetry
    expansion / position mapping as :func:`phonjax.io.born.read_born`), else the recorded arrays when
    ``crystal`` has the reference primitive's atoms in the same order."""
    from phonjax.io.born import read_born
    crystal = Crystal.coerce(crystal)
    name = record.get("born_file")
    if model_dir is not None and name and (Path(model_dir) / name).is_file():
        return read_born(Path(model_dir) / name, crystal)
    b = record.get("born") or {}
    ref = (record.get("reference_primitive") or {}).get("numbers")
    if ref is None or list(ref) != crystal.numbers.tolist():
        raise BornError("the short-range model's Born charges are recorded for the reference primitive cell "
                        f"(atoms {ref}), not for this structure (atoms {crystal.numbers.tolist()}): give born=...")
    return Born.from_arrays(b["born_charges"], b["epsilon"], factor=b.get("factor", units.COULOMB_EV_A),
                            source=f"model record ({b.get('source')})")
