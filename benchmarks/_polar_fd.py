"""Today's practice for benchmarks/polar_benchmark.py: phonopy finite displacements (0.01 Å, phonopy's
symmetry-reduced set) with SevenNet-0's own torch ASE calculator from the ``sevenn`` package, phonopy's force
constants and phonopy's Gonze–Lee NAC from the same BORN; every frequency comes from phonopy itself.

The force constants are cached like the phonjax ones (``fd-<calculator>-<structure sha>-N<n>.npz`` + .json).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import time

import numpy as np

from _lif_fcstore import log, sc_tag, sha_file
from phonjax.structure import supercell_matrix

#: phonopy's default displacement (Å).
DISTANCE = 0.01


def _phonopy(prim, n):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(cell=np.asarray(prim.cell), positions=np.asarray(prim.positions),
                        numbers=np.asarray(prim.numbers), masses=np.asarray(prim.masses))
    return Phonopy(unit, supercell_matrix=supercell_matrix(n), primitive_matrix="P")


def _forces(ph, model: str) -> tuple[list, float]:
    """Forces (eV/Å) of every displaced supercell with SevenNet's calculator; seconds spent."""
    import ase
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator(model, device="cpu")
    t = time.perf_counter()
    out = []
    for sc in ph.supercells_with_displacements:
        atoms = ase.Atoms(numbers=sc.numbers, positions=sc.positions, cell=sc.cell, pbc=True)
        atoms.calc = calc
        out.append(np.asarray(atoms.get_forces(), dtype=np.float64))
    return out, time.perf_counter() - t


def fd_phonopy(prim, structure: Path, born_file: Path, n, cache: Path, model: str = "7net-0"):
    """(phonopy.Phonopy with force constants and NAC, meta) for ``prim`` in an n×n×n (or N1×N2×N3) supercell."""
    from phonopy.file_IO import parse_BORN

    ph = _phonopy(prim, n)
    ph.generate_displacements(distance=DISTANCE)
    key = f"fd-{model}-{sha_file(structure)[:8]}-N{sc_tag(n)}"
    npz, meta_p = cache / f"{key}.npz", cache / f"{key}.json"
    if npz.is_file() and meta_p.is_file():
        ph.force_constants = np.load(npz)["fc"]
        meta = json.loads(meta_p.read_text()) | {"from_cache": True}
    else:
        log(f"finite displacements ({model}, torch) N={n}: {len(ph.supercells_with_displacements)} supercells")
        t0 = time.perf_counter()
        forces, t_forces = _forces(ph, model)
        ph.forces = forces
        ph.produce_force_constants()
        meta = {"n": n, "n_atoms": len(ph.supercell), "n_displacements": len(forces), "forces_time_s": t_forces,
                "fd_time_s": time.perf_counter() - t0, "load_avg": os.getloadavg()[0], "distance_A": DISTANCE,
                "calculator": f"sevenn.calculator.SevenNetCalculator({model!r}, device='cpu')",
                "torch_threads": _torch_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = Path(str(npz) + ".tmp.npz")
        np.savez(tmp, fc=ph.force_constants)
        tmp.rename(npz)
        meta_p.write_text(json.dumps(meta, indent=1))
        meta["from_cache"] = False
        log(f"  FD: {meta['fd_time_s']:.1f} s")
    ph.nac_params = parse_BORN(ph.primitive, filename=str(born_file))
    return ph, meta


def _torch_threads():
    import torch
    return torch.get_num_threads()


def fd_freq_fn(ph, ref):
    """freq_fn(q, directions) of phonopy: on the reference path (``directions`` given) phonopy's band structure
    over the reference segments (its NAC takes each Γ's direction from the path); elsewhere phonopy's q-points
    (no NAC term at Γ, as phonopy's mesh)."""
    from _lif import segment_slices

    path_q = np.asarray(ref.qpoints)

    def freq_fn(q, directions):
        q = np.asarray(q, dtype=np.float64)
        if directions is not None:
            if q.shape != path_q.shape or not np.allclose(q, path_q):
                raise ValueError("directions are only known on the reference path")
            ph.run_band_structure([path_q[s] for s in segment_slices(ref)], with_eigenvectors=False)
            return np.sort(np.concatenate(ph.get_band_structure_dict()["frequencies"]), axis=1)
        ph.run_qpoints(q, with_eigenvectors=False)
        return np.sort(ph.get_qpoints_dict()["frequencies"], axis=1)

    return freq_fn
