"""Benchmark: q-point throughput of C(q) + C_dd(q) + eigh (phonjax) vs phonopy, and peak memory of force
constants vs supercell size.

1. Throughput: phonopy's NaCl example (FORCE_SETS + BORN, 2×2×2 conventional supercell, 64 atoms) loaded into
   phonopy and into phonjax (``from_phonopy``); frequencies on ``--nq`` random q-points with the Gonze
   dipole-dipole correction in both (phonopy's default NAC method). Warm medians (phonjax compiles once per
   q bucket; compile reported separately); agreement max |Δν| (THz) checked on the same q.
   Optionally also ``phonjax.sharding.sharded_frequencies`` over all local devices.
2. Memory: for each LiF N×N×N supercell, a fresh subprocess computes home-cell force constants (small random
   NequIP or the LJ pair potential) and reports its peak RSS (and device peak bytes when the backend has them),
   with the RSS after imports/model set-up as the baseline.

    python benchmarks/bench_qpoints.py --nq 1000 10000 --mem-sizes 3 5 7 --mem-energy small
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np

from _common import RESULTS, ROOT, metadata, timed, write_json

import jax  # noqa: E402

EXAMPLES = ROOT.parent / "shared" / "data" / "phonopy-examples" / "NaCl"

MEM_SCRIPT = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import phonjax, jax
from ase.build import bulk
from phonjax.structure import Crystal
from phonjax.force_constants import force_constants
N, energy = {N}, {energy!r}
prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
if energy == "pair":
    from phonjax.potentials import rock_salt_potential
    model = rock_salt_potential(4.03, "Li", "F")
else:
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig
    sys.path.insert(0, {bench!r})
    from bench_force_constants import SMALL
    model = Model.init(ModelConfig(**SMALL, dtype="float64"), seed=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
fc = force_constants(model, prim, N, symmetry={sym}, chunk_size={chunk}, allow_small_supercell=True)
dt = time.perf_counter() - t
out = dict(N=N, n_atoms=int(fc.supercell.crystal.n_atoms), baseline_rss_MiB=base, n_hvp=fc.report.n_hvp,
           peak_rss_MiB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, t_first_call_s=dt)
st = jax.devices()[0].memory_stats() or dict()
if "peak_bytes_in_use" in st:
    out["device_peak_MiB"] = st["peak_bytes_in_use"] / 2 ** 20
print("RESULT " + json.dumps(out))
"""


def throughput(nqs, repeats: int, sharded: bool) -> list:
    import phonopy
    from phonjax.io.phonopy import from_phonopy
    ph = phonopy.load(EXAMPLES / "phonopy_disp.yaml", force_sets_filename=EXAMPLES / "FORCE_SETS",
                      born_filename=EXAMPLES / "BORN", log_level=0)
    ph.produce_force_constants()
    fc = from_phonopy(ph)
    rows = []
    for nq in nqs:
        q = np.random.default_rng(nq).uniform(-0.5, 0.5, (nq, 3))
        row = {"nq": nq, "n_prim": fc.primitive.n_atoms, "n_atoms_supercell": int(fc.supercell.crystal.n_atoms)}
        r = timed(lambda: fc.frequencies(q, lr="gonze"), repeats)
        row["phonjax_s"], row["phonjax_compile_s"] = r["median_s"], r["compile_s_est"]
        fj = r["out"]

        def run_ph():
            ph.run_qpoints(q)
            return ph.get_qpoints_dict()["frequencies"]
        r = timed(run_ph, max(1, repeats // 2), warmup=0)
        row["phonopy_s"] = r["median_s"]
        row["max_dfreq_THz"] = float(np.abs(np.asarray(r["out"]) - fj).max())
        row["phonjax_q_per_s"] = nq / row["phonjax_s"]
        row["phonopy_q_per_s"] = nq / row["phonopy_s"]
        row["speedup"] = row["phonopy_s"] / row["phonjax_s"]
        if sharded:
            from phonjax.sharding import sharded_frequencies
            r = timed(lambda: sharded_frequencies(fc, q, lr="gonze"), repeats)
            row["sharded_s"], row["sharded_devices"] = r["median_s"], jax.device_count()
            row["sharded_max_dfreq_THz"] = float(np.abs(r["out"] - fj).max())
        print(row, flush=True)
        rows.append(row)
    return rows


def memory(sizes, energy: str, symmetry: bool, chunk) -> list:
    rows = []
    for N in sizes:
        code = MEM_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), N=N, energy=energy, sym=symmetry,
                                 chunk=chunk)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode != 0 or not line:
            print(p.stderr[-2000:])
            rows.append({"N": N, "error": p.stderr[-300:]})
            break
        rows.append(json.loads(line[0][7:]))
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nq", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sharded", action="store_true", help="also phonjax.sharding over all devices")
    ap.add_argument("--mem-sizes", type=int, nargs="*", default=[3, 5, 7])
    ap.add_argument("--mem-energy", choices=("small", "pair"), default="small")
    ap.add_argument("--mem-symmetry", action="store_true")
    ap.add_argument("--mem-chunk", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else RESULTS / f"qpoints_memory_{jax.default_backend()}.json"
    meta = metadata({"throughput_system": "phonopy example NaCl (FORCE_SETS+BORN), lr=gonze both",
                     "memory_energy": args.mem_energy, "memory_symmetry": args.mem_symmetry,
                     "memory_chunk_size": args.mem_chunk})
    rows = []
    if args.nq:
        if not EXAMPLES.is_dir():
            print(f"skipping throughput: {EXAMPLES} not found")
        else:
            rows += [dict(kind="throughput", **r) for r in throughput(args.nq, args.repeats, args.sharded)]
            write_json(out, meta, rows)
    t = time.perf_counter()
    rows += [dict(kind="memory", **r) for r in memory(args.mem_sizes, args.mem_energy, args.mem_symmetry,
                                                     args.mem_chunk)]
    meta["memory_wall_s"] = time.perf_counter() - t
    write_json(out, meta, rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    tp = [r for r in rows if r["kind"] == "throughput"]
    if tp:
        a1.loglog([r["nq"] for r in tp], [r["phonjax_q_per_s"] for r in tp], "o-", label="phonjax (jit, warm)")
        a1.loglog([r["nq"] for r in tp], [r["phonopy_q_per_s"] for r in tp], "k^-", label="phonopy")
        a1.set_xlabel("q-points")
        a1.set_ylabel("q-points / s (C + C_dd + eigh)")
        a1.legend()
        a1.set_title("NaCl 2×2×2 conv., Gonze NAC", fontsize=8)
    mem = [r for r in rows if r["kind"] == "memory" and "peak_rss_MiB" in r]
    if mem:
        a2.plot([r["n_atoms"] for r in mem], [r["peak_rss_MiB"] for r in mem], "o-", label="peak RSS")
        a2.plot([r["n_atoms"] for r in mem], [r["baseline_rss_MiB"] for r in mem], "s--", label="after set-up")
        a2.set_xscale("log")
        a2.set_xlabel("atoms in supercell")
        a2.set_ylabel("MiB")
        a2.legend()
        a2.set_title(f"LiF force constants ({args.mem_energy}), fresh process per size", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out} and .png")


if __name__ == "__main__":
    main()
