"""Finite-displacement DFT force constants: phonopy's displacement generator + pw.x forces (resumable).

``fd_force_constants(structure, supercell_matrix, pw, out_dir)`` displaces symmetry-independent atoms
(phonopy, ``amplitude`` Å), runs one pw.x SCF per displaced supercell (each in its own directory with a
``result.json`` marker, as the dataset builder; the perfect supercell is run too and its residual forces
subtracted), writes phonopy's ``FORCE_SETS`` and returns force constants in phonjax's convention:
fc[i, j, a, b] = ∂²E/∂u_ia ∂u_jb (eV/Å²), shape (n_prim, n_super, 3, 3), rows for home-cell atoms i,
columns in ``phonjax.structure.make_supercell`` order (the mapping from phonopy's order is by position).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ..io.qe import QEOutputError, parse_pw_output
from ..io.structure import AtomMatchError, match_atoms
from ..structure import Crystal, Supercell, make_supercell
from .pseudos import pseudos_for
from .qe_io import PwSettings, write_pw_input
from .runner import QERunError, find_executable, load_result, run_qe, run_samples


@dataclass(frozen=True, eq=False)
class FDResult:
    """fc (n_prim, n_super, 3, 3) eV/Å² in phonjax order; supercell: phonjax Supercell; force_sets: path
    of phonopy's FORCE_SETS; n_displacements; phonopy: the phonopy.Phonopy object (phonopy's order)."""

    fc: np.ndarray
    supercell: Supercell
    force_sets: Path
    n_displacements: int
    phonopy: object


def _phonopy_to_phonjax_map(ph_super, sc: Crystal) -> np.ndarray:
    """perm[k] = phonjax index of phonopy supercell atom k (positions matched modulo the supercell)."""
    cell = np.asarray(sc.cell)
    if not np.allclose(np.asarray(ph_super.cell), cell, atol=1e-6):
        raise ValueError("phonopy and phonjax supercell lattices differ (supercell matrix convention)")
    try:
        return match_atoms(np.asarray(ph_super.scaled_positions) @ cell, sc.positions, cell)
    except AtomMatchError as e:
        raise ValueError(f"cannot map phonopy's supercell atoms onto phonjax's ({e})") from None


def phonopy_fc_to_phonjax(ph, crystal: Crystal, supercell_matrix) -> tuple[np.ndarray, Supercell]:
    """Full force constants of a phonopy.Phonopy (unit cell = ``crystal``, primitive_matrix "P") →
    (fc (n_prim, n_super, 3, 3) in phonjax's make_supercell order, that Supercell)."""
    M = np.asarray(supercell_matrix, dtype=int)
    M = np.diag(M) if M.shape == (3,) else M
    fc_full = np.asarray(ph.force_constants)   # (n_super, n_super, 3, 3) in phonopy's order
    if fc_full.shape[0] != fc_full.shape[1]:
        raise ValueError("expected phonopy's full force constants (produce_force_constants(), not compact)")
    sc = make_supercell(crystal, M)
    perm = _phonopy_to_phonjax_map(ph.supercell, sc.crystal)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    rows = inv[np.asarray(sc.p2s)]             # phonopy indices of phonjax's home-cell atoms
    return fc_full[rows][:, inv], sc           # columns reordered: fc[:, j] ← phonopy atom inv[j]


def fd_force_constants(structure, supercell_matrix, pw: PwSettings, out_dir, *, amplitude: float = 0.01,
                       nprocs: int = 1, workers: int = 1, resume: bool = True, symprec: float = 1e-5,
                       subtract_residual: bool = True, progress: bool = True) -> FDResult:
    """DFT force constants by finite displacements (see module docstring). Samples that fail (unconverged
    SCF, ...) raise QEOutputError after all others finished; rerunning resumes."""
    from phonopy import Phonopy  # noqa: PLC0415
    from phonopy.file_IO import write_FORCE_SETS  # noqa: PLC0415
    from phonopy.structure.atoms import PhonopyAtoms  # noqa: PLC0415

    find_executable("pw.x")
    crystal = Crystal.coerce(structure)
    M = np.asarray(supercell_matrix, dtype=int)
    M = np.diag(M) if M.shape == (3,) else M
    symbols = [chemical_symbols[int(z)] for z in crystal.numbers]
    unit = PhonopyAtoms(symbols=symbols, cell=crystal.cell, scaled_positions=crystal.scaled_positions,
                        masses=crystal.masses)
    ph = Phonopy(unit, supercell_matrix=M.T, primitive_matrix="P", symprec=symprec)  # S = Mᵀ·A; "P": no reduction
    ph.generate_displacements(distance=amplitude)
    supercells = ph.supercells_with_displacements
    ps = pseudos_for(symbols, pw.pseudo_family, pw.pseudo_dir)
    pdir = next(iter(ps.values())).path.parent
    files = {s: p.path.name for s, p in ps.items()}
    out = Path(out_dir)

    def cdir(k):
        return out / ("perfect" if k == 0 else f"disp-{k:03d}")

    def compute(k):
        s = ph.supercell if k == 0 else supercells[k - 1]
        c = Crystal(s.cell, s.scaled_positions @ s.cell, s.numbers, s.masses)
        text = write_pw_input(c, pw, pseudo_dir=pdir, pseudo_files=files, prefix=f"fd{k}")
        rec = run_qe("pw.x", text, cdir(k), "scf", nprocs=nprocs, check=False)
        res = parse_pw_output(rec.output_path.read_text())
        if rec.returncode != 0:
            raise QERunError(f"pw.x exited with status {rec.returncode} in {cdir(k)}")
        shutil.rmtree(cdir(k) / "tmp", ignore_errors=True)  # pw.x scratch (wavefunctions)
        return {"forces": res.forces.tolist(), "energy": res.energy, "seconds": rec.seconds}

    ks = range(0 if subtract_residual else 1, len(supercells) + 1)
    rep = run_samples(ks, cdir, compute, workers=workers, resume=resume, desc="displacements", progress=progress)
    if rep.failed:
        raise QEOutputError(f"finite-displacement runs failed (rerun to resume): {rep.failed}")
    forces = np.array([load_result(cdir(k))["forces"] for k in range(1, len(supercells) + 1)])
    if subtract_residual:
        forces = forces - np.array(load_result(cdir(0))["forces"])[None]
    ph.forces = forces
    write_FORCE_SETS(ph.dataset, filename=str(out / "FORCE_SETS"))
    ph.produce_force_constants()
    fc, sc = phonopy_fc_to_phonjax(ph, crystal, M)
    return FDResult(fc=fc, supercell=sc, force_sets=out / "FORCE_SETS", n_displacements=len(supercells),
                    phonopy=ph)
