"""Issue 20 deliver 2: `phonjax born` (ε∞ and Z* from one scf + one Γ-only linear-response ph.x) against the full
q-grid DFPT reference of every benchmark crystal: its wall time, and its ε∞/Z* against the reference's.

    nice .venv/bin/python benchmarks/born_vs_dfpt.py [--crystal AlN ...]
        → benchmarks/results/born_vs_dfpt_cpu.json + .png

Each crystal: ``examples/<X>/dfpt`` with dfpt.json and BORN; ``configs/dfpt_<x>.yaml`` with ``relax: false`` on the
reference's relaxed cell (``dfpt/POSCAR``), so that both runs see the same structure, cutoff and ε∞ k-grid; run
from an empty directory (``phonjax born`` skips finished steps). The DFPT time is the sum of the QE steps that
dfpt.json records (vc-relax, scf, the q-grid's ph.x — summed over q-point runs where split —, the dielectric
run, q2r, matdyn); a reference computed over several resumed runs records only its last one, so its total is a
lower bound (CaF2's ph.x took ~9 h over three runs, README). Timings are wall-clock on this 2-core machine with
whatever else ran (recorded as load averages).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import metadata, write_json  # noqa: E402


def crystals(names=None) -> list[str]:
    out = []
    for d in sorted((ROOT / "examples").iterdir()):
        if names and d.name not in names:
            continue
        if (d / "dfpt" / "dfpt.json").is_file() and (d / "dfpt" / "BORN").is_file() \
                and (ROOT / "configs" / f"dfpt_{d.name.lower()}.yaml").is_file():
            out.append(d.name)
    return out


def dfpt_seconds(timings: dict) -> float:
    """Total QE seconds of a dfpt.json record (the split q-grid's sum over its q-point runs replaces its wall)."""
    t = dict(timings)
    if any(k.startswith("ph (sum over") for k in t):
        t.pop("ph", None)
    return float(sum(t.values()))


def add_ratios(row: dict) -> None:
    """DFPT total over born, with and without the reference's vc-relax (born ran on the relaxed cell)."""
    row["dfpt_qe_s_without_relax"] = row["dfpt_qe_s"] - float(row["dfpt_steps_s"].get("vc-relax", 0.0))
    row["dfpt_over_born"] = row["dfpt_qe_s"] / row["born_wall_s"]
    row["dfpt_without_relax_over_born"] = row["dfpt_qe_s_without_relax"] / row["born_wall_s"]


def run_one(name: str, work: Path) -> dict:
    from phonjax.dataset import load_dfpt_config, run_born

    d = ROOT / "examples" / name / "dfpt"
    ref = json.loads((d / "dfpt.json").read_text())
    cfg = load_dfpt_config(ROOT / "configs" / f"dfpt_{name.lower()}.yaml", overrides=["relax=false"])
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    diel = run_born(d / "POSCAR", cfg, out)
    wall = time.perf_counter() - t0
    eps_ref, z_ref = np.asarray(ref["epsilon_inf"]), np.asarray(ref["zstar"])
    row = {"crystal": name, "born_wall_s": wall, "born_qe_s": float(sum(diel.seconds.values())),
           "born_steps_s": diel.seconds, "dfpt_qe_s": dfpt_seconds(ref["timings_s"]), "dfpt_steps_s": ref["timings_s"],
           "epsil_kpts": list(cfg.epsil_kpts or cfg.pw.kpts), "qgrid": list(cfg.qgrid),
           "epsilon_inf": diel.epsilon.tolist(), "max_abs_d_epsilon": float(np.abs(diel.epsilon - eps_ref).max()),
           "max_abs_d_zstar_e": float(np.abs(diel.zstar - z_ref).max()),
           "neutrality_violation_e": float(diel.violation), "load_avg_start": load0, "load_avg_end": os.getloadavg(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    add_ratios(row)
    print(f"{name}: born {wall:.0f} s vs DFPT {row['dfpt_qe_s']:.0f} s ({row['dfpt_over_born']:.0f}×; without its "
          f"vc-relax {row['dfpt_without_relax_over_born']:.0f}×); "
          f"max |Δε∞| {row['max_abs_d_epsilon']:.2e}, max |ΔZ*| {row['max_abs_d_zstar_e']:.2e} e", flush=True)
    return row


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    y = np.arange(len(rows))
    ax.barh(y + 0.2, [r["dfpt_qe_s"] / 60 for r in rows], 0.4, label="full q-grid DFPT (recorded QE time)")
    ax.barh(y - 0.2, [r["born_wall_s"] / 60 for r in rows], 0.4, label="phonjax born (this run)")
    ax.set_yticks(y, [r["crystal"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("minutes (2 cores)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystal", nargs="*", default=None)
    ap.add_argument("--note", default="", help="what else ran on the machine")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "born_vs_dfpt_cpu.json")
    args = ap.parse_args(argv)
    names = crystals(args.crystal)
    if not names:
        raise SystemExit("no crystal with examples/<X>/dfpt/dfpt.json, BORN and configs/dfpt_<x>.yaml")
    meta = metadata({"note": args.note})
    work = Path(tempfile.mkdtemp(prefix="phonjax-born-"))
    # rows of crystals not in this run are kept (each row records its own date and load)
    old = json.loads(args.out.read_text()).get("rows", []) if args.out.is_file() else []
    rows = [r for r in old if r.get("crystal") not in names]
    try:
        for name in names:
            rows.append(run_one(name, work))
            write_json(args.out, meta, rows)  # after every crystal: a run cut short keeps what it measured
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
