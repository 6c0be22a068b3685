"""Benchmark: the phonon workflow users run today — phonopy finite displacements with an ASE calculator
wrapping torch nequip (with and without symmetry) — vs ``phonjax.predict`` (autodiff force constants with
site-symmetry-reduced HVPs + band structure), same model weights, same supercell, same q-points.

Structures: LiF (rock salt, 2 phonopy displacements with symmetry) and an 8-atom triclinic Li4F4 cell (P1: no
symmetry to exploit). For each: wall time of phonopy (displacements, forces by torch one supercell at a time
— the ASE calculator rebuilds the neighbour list per call, as nequip's does — force constants, frequencies on
the path; torch warmed up first with 3 calls, reported separately) and of ``predict`` (first call incl. compilation, and a warm call), and the frequency difference
max/median |ν_phonopy − ν_phonjax| on the path (finite-difference error of the 0.01 Å displacements, plus
phonopy's lack of q-space ASR at Γ).

    python benchmarks/bench_workflow.py --arch small --lif-n 3 --lowsym-n 2
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import RESULTS, TorchSystem, build_pair, lif_primitive, low_symmetry_cell, metadata, write_json

import jax  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

from phonjax.bands import band_path  # noqa: E402
from phonjax.predict import predict  # noqa: E402
from phonjax.structure import Crystal  # noqa: E402


class TorchNequipCalculator(Calculator):
    """ASE calculator on a torch nequip model (energy, forces); neighbour list rebuilt per structure."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, tm):
        super().__init__()
        self.tm = tm
        self.n_calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = TorchSystem(self.tm, self.atoms).energy_forces()
        self.n_calls += 1
        self.results = {"energy": e, "forces": np.asarray(f, np.float64)}


def run_phonopy(prim_ase, N: int, tm, qpoints, symmetry: bool, distance: float = 0.01, warmup: int = 3) -> dict:
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    t0 = time.perf_counter()
    unit = PhonopyAtoms(symbols=prim_ase.get_chemical_symbols(), cell=prim_ase.cell.array,
                        scaled_positions=prim_ase.get_scaled_positions())
    ph = Phonopy(unit, supercell_matrix=np.eye(3, dtype=int) * N, primitive_matrix=np.eye(3), is_symmetry=symmetry)
    ph.generate_displacements(distance=distance, is_plusminus="auto")
    calc = TorchNequipCalculator(tm)
    from ase import Atoms
    t_warm = 0.0
    if warmup:  # TorchScript re-optimises over the first calls: warm it on the undisplaced supercell
        s0 = ph.supercell
        a0 = Atoms(s0.symbols, cell=s0.cell, scaled_positions=s0.scaled_positions, pbc=True)
        tw = time.perf_counter()
        for _ in range(warmup):
            TorchSystem(tm, a0).energy_forces()
        t_warm = time.perf_counter() - tw
        t0 += t_warm
    forces = []
    for s in ph.supercells_with_displacements:
        a = Atoms(s.symbols, cell=s.cell, scaled_positions=s.scaled_positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces())
    t_forces = time.perf_counter() - t0
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.run_qpoints(qpoints)
    f = ph.get_qpoints_dict()["frequencies"]
    return {"t_total_s": time.perf_counter() - t0, "t_forces_s": t_forces, "n_displacements": len(forces),
            "t_torch_warmup_s": t_warm,
            "freqs": np.asarray(f)}


def bench(label, prim_ase, N, tm, model, npoints: int, chunk_size=None) -> dict:
    prim = Crystal.from_ase(prim_ase)
    row = {"structure": label, "N": N, "n_prim": prim.n_atoms, "n_atoms_supercell": prim.n_atoms * N ** 3}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = predict(prim, model, N, npoints=npoints, out_dir=tmp, progress=False, allow_small_supercell=True,
                      chunk_size=chunk_size)
        row["phonjax_first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        res = predict(prim, model, N, npoints=npoints, out_dir=tmp, progress=False, allow_small_supercell=True,
                      chunk_size=chunk_size)
        row["phonjax_warm_s"] = time.perf_counter() - t
    row["phonjax_timings"] = {k: float(v) for k, v in res.timings.items()}
    row["phonjax_n_hvp"] = res.force_constants.report.n_hvp
    q = res.band.qpoints
    assert np.allclose(q, band_path(prim, npoints=npoints)["qpoints"])
    fj = res.band.frequencies
    for sym in (True, False):
        p = run_phonopy(prim_ase, N, tm, q, sym)
        tag = "sym" if sym else "nosym"
        row[f"phonopy_{tag}_s"] = p["t_total_s"]  # after torch warm-up (reported separately)
        row[f"phonopy_{tag}_torch_warmup_s"] = p["t_torch_warmup_s"]
        row[f"phonopy_{tag}_forces_s"] = p["t_forces_s"]
        row[f"phonopy_{tag}_n_displacements"] = p["n_displacements"]
        d = np.abs(p["freqs"] - fj)
        row[f"dfreq_{tag}_max_THz"] = float(d.max())
        row[f"dfreq_{tag}_median_THz"] = float(np.median(d))
        row[f"speedup_{tag}_first"] = p["t_total_s"] / row["phonjax_first_s"]
        row[f"speedup_{tag}_warm"] = p["t_total_s"] / row["phonjax_warm_s"]
    row["n_qpoints"] = len(q)
    row["max_frequency_THz"] = float(fj.max())
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("small", "oam-l"), default="small")
    ap.add_argument("--lif-n", type=int, default=3)
    ap.add_argument("--lowsym-n", type=int, default=2)
    ap.add_argument("--npoints", type=int, default=51)
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="Hessian-vector products per lax.map step (1 for OAM-L-sized models on 24 GiB)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from pathlib import Path
    out = Path(args.out) if args.out else RESULTS / f"workflow_{args.arch}_{jax.default_backend()}.json"
    tm, m64, _ = build_pair(args.arch)
    meta = metadata({"arch": args.arch, "model": m64.describe(), "phonopy_displacement_A": 0.01,
                     "phonopy_plusminus": "auto", "torch": "eager, float64, one supercell per call",
                     "chunk_size": args.chunk_size})
    rows = []
    for label, a, N in (("LiF", lif_primitive(), args.lif_n), ("Li4F4-P1", low_symmetry_cell(), args.lowsym_n)):
        if N < 1:
            continue
        rows.append(bench(label, a, N, tm, m64, args.npoints, args.chunk_size))
        print(rows[-1], flush=True)
        write_json(out, meta, rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(rows))
    for k, (key, lab) in enumerate((("phonopy_nosym_s", "phonopy+torch, no symmetry"),
                                    ("phonopy_sym_s", "phonopy+torch, symmetry"),
                                    ("phonjax_first_s", "phonjax predict (incl. compile)"),
                                    ("phonjax_warm_s", "phonjax predict (warm)"))):
        ax.bar(x + 0.2 * k - 0.3, [r[key] for r in rows], 0.2, label=lab)
    ax.set_xticks(x, [f"{r['structure']} {r['N']}³ ({r['n_atoms_supercell']} at.)" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("wall time (s)")
    ax.legend(fontsize=7)
    ax.set_title(f"phonon workflow, {m64.describe()[:60]}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out} and .png")


if __name__ == "__main__":
    main()
