"""Issue 20 deliver 1: are the DFPT references converged so that TO/LO(Γ) move < 1 %?

For every benchmark crystal (``examples/<X>/dfpt`` with its relaxed ``POSCAR`` and ``configs/dfpt_<x>.yaml``):
Γ phonons (ph.x, one q) and ε∞/Z* (the Γ-only dielectric run at the config's ``epsil_kpts``, patched into the Γ
dynamical matrix as ``phonjax dfpt`` does) at the reference settings and at tighter ones — plane-wave cutoffs
×1.25, and k-grids (phonon and dielectric) +2 per axis — then QE's own ``dynmat.x`` (``asr='crystal'``, the
non-analytic term along x and along z) for TO and LO. The q-grid does not enter Γ (ph.x computes Γ exactly);
it only enters the interpolated bands. The reference variant is also checked against the reference's own
``dfpt.json`` (matdyn.x's Γ frequencies).

    nice .venv/bin/python benchmarks/dfpt_gamma_convergence.py [--crystal BN ...]
        → benchmarks/results/dfpt_gamma_convergence_cpu.json (+ a table on stdout); scratch in out/gamma_conv/

Resumable: finished QE steps are skipped (phonjax.dataset.runner). Wall times are of this shared 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
import shutil
import sys
import time

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import metadata, write_json  # noqa: E402


def variants(config) -> dict:
    """{name: (pw settings of the phonons, k-grid of ε∞/Z*)}: the reference and the two tightened settings."""
    pw = config.pw
    keps = tuple(config.epsil_kpts or pw.kpts)
    up = 1.25
    return {"reference": (pw, keps),
            "cutoff x1.25": (replace(pw, ecutwfc=pw.ecutwfc * up, ecutrho=pw.ecutrho * up), keps),
            "k +2": (replace(pw, kpts=tuple(k + 2 for k in pw.kpts)), tuple(k + 2 for k in keps))}


def _dynmat_thz(qe_dir: Path, fildyn: str, direction, nice: int) -> list[float]:
    """Frequencies (THz, ascending) of dynmat.x on ``fildyn`` with asr='crystal' and the non-analytic term
    along ``direction`` (Cartesian)."""
    from phonjax.dataset.runner import run_qe

    q = ", ".join(f"q({i + 1}) = {float(x)}" for i, x in enumerate(direction))
    text = f"&input\n  fildyn = '{fildyn}', asr = 'crystal', {q}\n/\n"
    name = "dynmat_" + "".join(str(int(x)) for x in direction)
    rec = run_qe("dynmat.x", text, qe_dir, name, resume=True, nice=nice)
    out, on = [], False
    for line in rec.output_path.read_text().splitlines():
        if "# mode" in line:
            on = True
            continue
        parts = line.split()
        if on and len(parts) >= 3 and parts[0].isdigit():
            out.append(float(parts[2]))
        elif on and out and not parts:
            break
    if not out:
        raise RuntimeError(f"no frequencies in {rec.output_path}")
    return sorted(out)


def gamma(crystal, config, pw, keps, qe_dir: Path, pdir, files) -> dict:
    """TO/LO(Γ) (THz, along x and z), ε∞ and Z* at ``pw`` (phonons) and ``keps`` (dielectric), and the QE wall times."""
    from phonjax.dataset.dielectric import patch_dyn_dielectric, run_dielectric
    from phonjax.dataset.qe_io import write_ph_input, write_pw_input
    from phonjax.dataset.runner import atomic_write_text, run_qe

    run_kw = dict(nprocs=config.nprocs, npool=config.npool, nice=config.nice)
    pref = config.prefix
    text = write_pw_input(crystal, pw, pseudo_dir=pdir, pseudo_files=files, calculation="scf", prefix=pref,
                          control={"disk_io": None})
    t = {"scf": run_qe("pw.x", text, qe_dir, "scf", resume=True, **run_kw).seconds}
    ph = write_ph_input(prefix=pref, fildyn=f"{pref}.dyn", tr2_ph=config.tr2_ph, epsil=True,
                        title=f"Gamma phonons of {pref}")
    t["ph_gamma"] = run_qe("ph.x", ph, qe_dir, "ph", resume=True, **run_kw).seconds
    d = run_dielectric(crystal, replace(pw, kpts=tuple(keps)), pseudo_dir=pdir, pseudo_files=files, qe_dir=qe_dir,
                       name=pref + "_eps", tr2_ph=config.tr2_ph, run_kw=run_kw)
    t.update({f"dielectric {k}": v for k, v in d.seconds.items()})
    dyn = qe_dir / f"{pref}.dyn"
    patched = qe_dir / f"{pref}.dyn.eps"
    atomic_write_text(patched, patch_dyn_dielectric(dyn.read_text(), d.epsilon, d.zstar_raw))
    shutil.rmtree(qe_dir / "tmp", ignore_errors=True)
    shutil.rmtree(qe_dir / "_ph0", ignore_errors=True)
    n = 3 * len(crystal.numbers)
    fx = _dynmat_thz(qe_dir, patched.name, (1, 0, 0), config.nice)
    fz = _dynmat_thz(qe_dir, patched.name, (0, 0, 1), config.nice)
    return {"freq_x_thz": fx[:n], "freq_z_thz": fz[:n], "epsilon_inf": np.diag(d.epsilon).tolist(),
            "zstar_diag": [np.diag(z).tolist() for z in d.zstar], "violation_e": d.violation, "seconds": t}


def crystals(names=None) -> list[str]:
    out = []
    for d in sorted((ROOT / "examples").iterdir()):
        if (names and d.name not in names) or not (d / "dfpt" / "dfpt.json").is_file():
            continue
        if (ROOT / "configs" / f"dfpt_{d.name.lower()}.yaml").is_file():
            out.append(d.name)
    return out


def run_crystal(name: str, work: Path) -> dict:
    from phonjax.dataset.dfpt import _setup, load_dfpt_config

    config = load_dfpt_config(ROOT / "configs" / f"dfpt_{name.lower()}.yaml")
    ref = json.loads((ROOT / "examples" / name / "dfpt" / "dfpt.json").read_text())
    rows = {}
    for vname, (pw, keps) in variants(config).items():
        crystal, _, qe_dir, _, _, pdir, files = _setup(ROOT / "examples" / name / "dfpt" / "POSCAR", config,
                                                       work / name / vname.replace(" ", "_"), ("pw.x", "ph.x"))
        t0 = time.time()
        rows[vname] = {"ecutwfc": pw.ecutwfc, "ecutrho": pw.ecutrho, "kpts": list(pw.kpts), "epsil_kpts": list(keps),
                       **gamma(crystal, config, pw, keps, qe_dir, pdir, files), "wall_s": time.time() - t0}
        print(f"{name} {vname}: x {np.round(rows[vname]['freq_x_thz'], 3).tolist()}", flush=True)
    base = rows["reference"]
    for r in rows.values():
        r["max_rel_change_optical"] = max(
            float(np.max(np.abs(np.asarray(r[k][3:]) / np.asarray(base[k][3:]) - 1.0)))
            for k in ("freq_x_thz", "freq_z_thz"))
    # dfpt.json: the optical Γ frequencies of every Γ point of the band path (one per direction of approach);
    # each must be one of this run's directions (x or z) — the same numbers from matdyn.x instead of dynmat.x
    mine = [np.asarray(base[k][3:]) for k in ("freq_x_thz", "freq_z_thz")]
    diffs = [min(float(np.max(np.abs(np.sort(g) - np.sort(m)))) for m in mine)
             for g in np.asarray(ref["gamma_optical_thz"], float) if len(g) == len(mine[0])]
    return {"variants": rows, "reference_dfpt_json_optical_thz": ref["gamma_optical_thz"],
            "reference_vs_dfpt_json_max_abs_thz": max(diffs) if diffs else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystal", nargs="*", default=None)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "gamma_conv")
    ap.add_argument("--note", default="", help="what else ran on the machine")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dfpt_gamma_convergence_cpu.json")
    args = ap.parse_args(argv)
    rows = {r["crystal"]: r for r in (json.loads(args.out.read_text())["rows"] if args.out.is_file() else [])}
    for name in crystals(args.crystal):
        load = os.getloadavg()
        rows[name] = {"crystal": name, **run_crystal(name, args.work), "load_avg_start": load}
        write_json(args.out, metadata({"note": args.note}), list(rows.values()))  # kept after every crystal
    print("| crystal | variant | ecut (Ry) | k / ε k | TO, LO (x) THz | LO (z) | max rel. change | wall s |")
    for name, c in rows.items():
        for vname, r in c["variants"].items():
            fx, fz = r["freq_x_thz"], r["freq_z_thz"]
            print(f"| {name} | {vname} | {r['ecutwfc']:.0f}/{r['ecutrho']:.0f} | {r['kpts']} / {r['epsil_kpts']} | "
                  f"{fx[3]:.3f}, {fx[-1]:.3f} | {fz[-1]:.3f} | {100 * r['max_rel_change_optical']:.2f} % | "
                  f"{r['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
