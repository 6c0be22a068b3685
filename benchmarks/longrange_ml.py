"""Every ``--lr`` mode on ML force constants of LiF (pretrained SevenNet-0) against the DFPT reference.

    .venv/bin/python benchmarks/longrange_ml.py [--out DIR] [--supercells prim3 conv2 conv3]

Force constants: SevenNet-0 (sevenn, torch, CPU) forces, phonopy finite displacements (0.01 Å, symmetry) at the
PBE lattice of examples/LiF/POSCAR; Born charges / ε∞: examples/LiF/BORN (QE DFPT). Reference:
examples/LiF/dfpt/band.yaml (QE ph.x 4×4×4 + q2r/matdyn with NAC), 130 q-points Γ–X–U|K–Γ–L; at Γ the q
direction comes from the neighbouring path point. Reports RMSE (cm⁻¹) per supercell and mode, the LO/TO at Γ
and the LO branch at 0.3 of Γ–X. Writes OUT/longrange_ml.json and OUT/longrange_ml.png.
torch is imported only through sevenn here (benchmarks may use torch).
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import phonjax  # noqa: F401
from phonjax import units
from phonjax.io.born import read_born
from phonjax.structure import Crystal
from phonjax.io.band_yaml import read_band_yaml
from phonjax.dataset.fd import phonopy_fc_to_phonjax
from phonjax.longrange.strategies import make_correction
from phonjax.dynmat import correction_frequencies
from phonjax.fourier import ws_images

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "LiF"
CONV = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
SUPERCELLS = {"prim3": 3 * np.eye(3, dtype=int), "conv2": 2 * CONV, "conv3": 3 * CONV, "prim4": 4 * np.eye(3, dtype=int)}
MODES = {"none": dict(lr="none"), "na": dict(lr="na"), "ewald": dict(lr="ewald"),
         "ewald-leak sphere:5.0": dict(lr="ewald-leak", leak_region="sphere:5.0"),
         "recip": dict(lr="recip"), "gonze": dict(lr="gonze"), "wang": dict(lr="wang"),
         "gonze+LO-projection": dict(lr="gonze", lo_projection=True)}


def ml_force_constants(prim: Crystal, M, calc):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    unit = PhonopyAtoms(symbols=prim.symbols, cell=prim.cell, scaled_positions=prim.scaled_positions,
                        masses=prim.masses)
    ph = Phonopy(unit, supercell_matrix=np.asarray(M).T, primitive_matrix="P")
    ph.generate_displacements(distance=0.01)
    forces = []
    t = time.time()
    for s in ph.supercells_with_displacements:
        from ase import Atoms
        a = Atoms(s.symbols, cell=s.cell, scaled_positions=s.scaled_positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    fc, sc = phonopy_fc_to_phonjax(ph, prim, M)
    return fc, sc, {"n_displacements": len(forces), "force_time_s": time.time() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--supercells", nargs="+", default=["prim3", "conv2", "conv3"], choices=list(SUPERCELLS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import ase.io
    prim = Crystal.from_ase(ase.io.read(EX / "POSCAR"))
    born = read_born(EX / "BORN", prim)
    ref = read_band_yaml(EX / "dfpt" / "band.yaml")
    q = np.asarray(ref.qpoints)
    fref = np.asarray(ref.frequencies)
    rec_t = np.linalg.inv(prim.cell).T
    gam = np.flatnonzero(np.linalg.norm(q @ rec_t, axis=1) < 1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator
        calc = SevenNetCalculator("7net-0", device="cpu")
    res = {"reference": str(EX / "dfpt" / "band.yaml"), "born": {"zstar_xx": born.zstar[:, 0, 0].tolist(),
           "epsilon_xx": float(born.epsilon[0, 0])}, "supercells": {}}
    curves = {}
    i03 = int(round(0.3 * 39))  # 0.3 of Γ–X (first segment has 40 points)
    for name in args.supercells:
        fc, sc, info = ml_force_constants(prim, SUPERCELLS[name], calc)
        images = ws_images(sc)
        out = {"n_atoms": sc.crystal.n_atoms, **info, "modes": {}}
        for mode, kw in MODES.items():
            kw = dict(kw)
            lr = kw.pop("lr")
            corr = make_correction(lr, None if lr == "none" else born, sc, fc, **kw)
            f = correction_frequencies(corr, sc, q, None, images=images)
            for k in gam:  # Γ: direction towards the neighbouring path point
                nb = next(j for j in (k + 1, k - 1) if 0 <= j < len(q) and 1e-9 < np.linalg.norm(q[j] - q[k]) < 0.2)
                f[k] = correction_frequencies(corr, sc, q[k:k + 1], (q[nb] - q[k]) @ rec_t, images=images)[0]
            d = (f - fref) * units.THZ_TO_CM1
            out["modes"][mode] = {"rmse_cm1": float(np.sqrt(np.mean(d ** 2))),
                                  "rmse_no_LO_cm1": float(np.sqrt(np.mean(d[:, :5] ** 2))),
                                  "LO_Gamma_cm1": float(f[gam[0], 5] * units.THZ_TO_CM1),
                                  "TO_Gamma_cm1": float(f[gam[0], 3] * units.THZ_TO_CM1),
                                  "LO_0.3_GX_cm1": float(f[i03, 5] * units.THZ_TO_CM1),
                                  "min_cm1": float(f.min() * units.THZ_TO_CM1)}
            curves[(name, mode)] = f
        res["supercells"][name] = out
        print(name, {m: round(v["rmse_cm1"], 1) for m, v in out["modes"].items()}, flush=True)
    res["dfpt"] = {"LO_Gamma_cm1": float(fref[gam[0], 5] * units.THZ_TO_CM1),
                   "TO_Gamma_cm1": float(fref[gam[0], 3] * units.THZ_TO_CM1),
                   "LO_0.3_GX_cm1": float(fref[i03, 5] * units.THZ_TO_CM1)}
    (args.out / "longrange_ml.json").write_text(json.dumps(res, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.asarray(ref.distances) if getattr(ref, "distances", None) is not None else np.arange(len(q))
    fig, axes = plt.subplots(len(args.supercells), len(MODES), figsize=(3.0 * len(MODES), 2.8 * len(args.supercells)),
                             sharey=True, squeeze=False)
    for r, name in enumerate(args.supercells):
        for c, mode in enumerate(MODES):
            ax = axes[r, c]
            ax.plot(x, fref * units.THZ_TO_CM1, "k.", ms=1.5)
            ax.plot(x, curves[(name, mode)] * units.THZ_TO_CM1, "C3", lw=0.9)
            ax.set_title(f"{name} {mode}\nRMSE {res['supercells'][name]['modes'][mode]['rmse_cm1']:.0f} cm⁻¹",
                         fontsize=7)
            ax.set_xticks([])
    axes[0, 0].set_ylabel("cm⁻¹")
    fig.suptitle("LiF, SevenNet-0 force constants + DFPT Z*/ε∞: --lr modes (red) vs QE DFPT (dots)")
    fig.tight_layout()
    fig.savefig(args.out / "longrange_ml.png", dpi=100)
    print(json.dumps(res["dfpt"]))


if __name__ == "__main__":
    main()
