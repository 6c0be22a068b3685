"""The user's job end to end (issue 18, item 6): ``phonjax predict`` in a fresh process — the first with an empty
XLA compilation cache, the second with the cache the first wrote — against today's practice in a fresh process:
phonopy finite displacements (0.01 Å, its symmetry reduction) with SevenNet-0's own torch ASE calculator
(``sevenn``) and phonopy's Gonze–Lee NAC from the same BORN file, on the same structure, supercell and q-points
(the band path phonjax wrote).

Cases: zincblende SiC (``examples/SiC/dfpt``: QE-relaxed cell and QE Z*/ε∞) in 4×4×4 (128 atoms) and 8×8×8
(1024 atoms), and a low-symmetry cell: the 8-atom conventional SiC cell with every atom displaced (P1: no
symmetry for either code to exploit) in 2×2×2 (64 atoms; below SevenNet-0's 2·r_max width, allowed explicitly
in both), without NAC on either side (the BORN file lists the 2 atoms of the primitive cell). Both sides' wall time includes interpreter start, imports and model loading; phonjax's includes the
conversion-free load of the converted model (converted once beforehand, as ``make demo`` does).

    python benchmarks/bench_user_job.py            # all cases (several minutes on 2 cores)
    python benchmarks/bench_user_job.py --cases sic4
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import RESULTS, ROOT, metadata, write_json

SIC = ROOT / "examples" / "SiC" / "dfpt"

PHONOPY_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, yaml, ase.io
import phonopy
from phonopy.structure.atoms import PhonopyAtoms
from phonopy.file_IO import parse_BORN
from sevenn.calculator import SevenNetCalculator
poscar, born, nsc, band_yaml, out = sys.argv[1:6]
n = [int(x) for x in nsc.split(",")]
at = ase.io.read(poscar)
calc = SevenNetCalculator("7net-0", device="cpu")
unit = PhonopyAtoms(symbols=at.get_chemical_symbols(), cell=at.cell[:], scaled_positions=at.get_scaled_positions())
ph = phonopy.Phonopy(unit, supercell_matrix=np.diag(n), primitive_matrix=np.eye(3))
ph.generate_displacements(distance=0.01)
t1 = time.perf_counter()
forces = []
for sc in ph.supercells_with_displacements:
    a = ase.Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
    a.calc = calc
    forces.append(a.get_forces())
t2 = time.perf_counter()
ph.forces = np.array(forces)
ph.produce_force_constants()
if born != "-":
    ph.nac_params = parse_BORN(ph.primitive, filename=born)
q = np.array([p["q-position"] for p in yaml.safe_load(open(band_yaml))["phonon"]])
ph.run_qpoints(q)
f = ph.get_qpoints_dict()["frequencies"]
t3 = time.perf_counter()
np.save(out, f)
print("RESULT " + json.dumps({"wall_in_script_s": t3 - t0, "setup_s": t1 - t0, "forces_s": t2 - t1,
                              "fc_bands_s": t3 - t2, "n_displacements": len(forces)}))
"""


def low_symmetry_poscar(path: Path) -> Path:
    """The 8-atom conventional SiC cell of the DFPT structure, every atom displaced (seeded): space group P1."""
    import ase.io
    from ase.build import make_supercell
    prim = ase.io.read(SIC / "POSCAR")
    conv = make_supercell(prim, np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]))
    conv.positions += np.random.default_rng(7).normal(0, 0.05, conv.positions.shape)
    ase.io.write(path, conv, format="vasp", direct=True)
    return path


def run_timed(cmd, env) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, p


#: the same model on both sides: SevenNet-0 converted (the phonjax default model is SevenNet-l3i5 since issue 20)
SEVENNET_0 = ROOT / ".cache" / "models" / "sevennet-0"


def sevennet0_dir() -> Path:
    """SevenNet-0 as a phonjax model directory (converted once into .cache/models/sevennet-0)."""
    if not (SEVENNET_0 / "config.yaml").is_file():
        subprocess.run([sys.executable, "-m", "phonjax.cli", "convert", "sevennet", "7net-0", "--out",
                        str(SEVENNET_0)], check=True, cwd=ROOT)
    return SEVENNET_0


def phonjax_runs(poscar: Path, n: int, out: Path, cache: Path, small: bool) -> dict:
    env = dict(os.environ, PHONJAX_COMPILE_CACHE=str(cache))
    lr = ["--allow-small-supercell", "--lr", "none"] if small else ["--born", str(SIC / "BORN")]
    cmd = [sys.executable, "-m", "phonjax.cli", "predict", str(poscar), "--supercell", str(n), str(n), str(n),
           "--no-primitive", "--model", str(sevennet0_dir())] + lr
    res = {}
    for k in ("first", "second"):
        wall, p = run_timed(cmd + ["--out", str(out / k)], env)
        if p.returncode != 0:
            raise RuntimeError(f"phonjax predict failed: {p.stderr[-2000:]}")
        s = json.loads((out / k / "summary.json").read_text())
        res[f"phonjax_{k}_s"] = wall
        res[f"phonjax_{k}_timings_s"] = s.get("timings_s")
    return res


def phonopy_run(poscar: Path, n: int, band_yaml: Path, out: Path, nac: bool) -> dict:
    script = out / "phonopy_job.py"
    script.write_text(PHONOPY_SCRIPT)
    wall, p = run_timed([sys.executable, str(script), str(poscar), str(SIC / "BORN") if nac else "-", f"{n},{n},{n}",
                         str(band_yaml), str(out / "phonopy_freqs.npy")], dict(os.environ))
    if p.returncode != 0:
        raise RuntimeError(f"phonopy job failed: {p.stderr[-2000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return {"phonopy_s": wall, "phonopy_detail": json.loads(line[7:])}


def case(name: str, poscar: Path, n: int, small: bool, work: Path) -> dict:
    import yaml
    out = work / name
    out.mkdir(parents=True)
    row = {"case": name, "supercell": [n] * 3}
    row.update(phonjax_runs(poscar, n, out, work / f"xla-{name}", small))
    band_yaml = out / "second" / "band.yaml"
    row.update(phonopy_run(poscar, n, band_yaml, out, not small))
    fj = np.array([[b["frequency"] for b in p["band"]] for p in yaml.safe_load(band_yaml.read_text())["phonon"]])
    fp = np.load(out / "phonopy_freqs.npy")
    row["n_atoms_supercell"] = int(len(fj[0]) // 3 * n ** 3)
    row["n_qpoints"] = len(fj)
    row["median_dfreq_THz"] = float(np.median(np.abs(np.sort(fj, 1) - np.sort(fp, 1))))
    row["speedup_first"] = row["phonopy_s"] / row["phonjax_first_s"]
    row["speedup_second"] = row["phonopy_s"] / row["phonjax_second_s"]
    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items() if "timings" not in k
           and k != "phonopy_detail"}, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=["sic4", "sic8", "lowsym2"])
    ap.add_argument("--out", default=str(RESULTS / "user_job_cpu.json"))
    args = ap.parse_args(argv)
    meta = metadata({"model": "SevenNet-0 (phonjax: converted; phonopy: sevenn's own calculator, torch CPU)",
                     "structure": "examples/SiC/dfpt (QE-relaxed zincblende SiC, QE BORN)",
                     "note": "wall time of fresh processes; phonjax: first with an empty compile cache, second "
                             "with the cache of the first; phonjax lr=auto, phonopy Gonze-Lee NAC"})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        specs = {"sic4": (SIC / "POSCAR", 4, False), "sic8": (SIC / "POSCAR", 8, False),
                 "lowsym2": (None, 2, True)}
        for name in args.cases:
            poscar, n, small = specs[name]
            poscar = poscar or low_symmetry_poscar(work / "SiC8_P1.vasp")
            rows.append(case(name, poscar, n, small, work))
            write_json(Path(args.out), meta, rows)
    plot(rows, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (key, lab) in enumerate((("phonjax_first_s", "phonjax predict, first process"),
                                    ("phonjax_second_s", "phonjax predict, second process"),
                                    ("phonopy_s", "phonopy FD + sevenn + NAC"))):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=lab)
    ax.set_xticks(x, [f"{r['case']} ({r['n_atoms_supercell']} atoms)" for r in rows])
    ax.set_ylabel("wall time (s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
