"""Benchmark: q-point throughput of C(q) + C_dd(q) + eigh (phonjax) vs phonopy, and peak memory of force
constants vs supercell size.

1. Throughput: phonopy's NaCl example (FORCE_SETS + BORN, 2×2×2 conventional supercell, 64 atoms) loaded into
   phonopy and into phonjax (``from_phonopy``); C(q) + Gonze–Lee C_dd(q) + ASR + eigh on ``--nq`` random q-points
   and on a ``--mesh`` Γ-centred mesh, both brought to their shortest representatives (phonopy's truncated G sum
   is not periodic: at an unreduced q its own result differs from its value at the equivalent reduced q by up
   to ~6e-6 THz; phonjax reduces internally). phonjax two ways: ``dynmat.phonons`` with the correction built
   once (as phonopy's dynamical matrix holds its NAC data) and ``ForceConstants.frequencies`` (builds the
   correction per call); phonopy ``run_qpoints``; for the mesh also each code's own thermal-mesh path: phonopy
   ``run_mesh`` (Γ-centred, point group + time reversal), phonjax's time-reversal q list and its point-group
   reduction (``qmesh.irreducible_mesh``, what ``mesh_thermal`` uses), the reduction's own time included.
   Warm medians in the same process (compile reported separately), a per-stage profile of phonjax, and the
   agreement max |Δν| (THz) on the same q. Optionally also ``phonjax.sharding.sharded_frequencies``.
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


def _stage_profile(fc, corr, q, repeats: int) -> dict:
    """Warm median seconds of each stage of dynmat.phonons for q (where the time goes)."""
    import jax.numpy as jnp
    from phonjax import dynmat
    from phonjax.fourier import fourier_fc, ws_images
    from phonjax.longrange.ewald import bz_representatives
    im = ws_images(fc.supercell)
    cq = fourier_fc(corr.short_range_fc, fc.supercell, q, images=im) + corr.long_range(q, None)
    delta = dynmat.asr_delta(fc, corr, images=im)
    n3 = cq.shape[1] * 3
    pad = dynmat.bucket(len(q))
    c = jnp.asarray(np.concatenate([cq.reshape(len(q), n3, n3), np.zeros((pad - len(q), n3, n3))]))
    ism = jnp.ones(n3)
    stages = {"C_sr(q) Fourier": lambda: fourier_fc(corr.short_range_fc, fc.supercell, q, images=im),
              "C_dd(q) (incl. BZ folding)": lambda: corr.long_range(q, None),
              "  of which BZ folding": lambda: bz_representatives(q, fc.primitive.cell),
              "ASR delta": lambda: dynmat.asr_delta(fc, corr, images=im),
              "eigh (jitted kernel only)": lambda: jax.block_until_ready(dynmat.eig_kernel(c, jnp.asarray(delta),
                                                                                         ism)),
              "eigen_frequencies (pad + eigh + THz)": lambda: dynmat.eigen_frequencies(cq, fc.primitive.masses,
                                                                                       delta)}
    return {k: timed(f, repeats)["median_s"] for k, f in stages.items()}


def _qsets(fc, nqs, mesh):
    from phonjax.longrange.ewald import bz_representatives
    from phonjax.thermal import mesh_qpoints
    out = []
    for nq in nqs:
        out.append((f"random {nq}", np.random.default_rng(nq).uniform(-0.5, 0.5, (nq, 3))))
    if mesh:
        out.append((f"mesh {mesh}x{mesh}x{mesh}", mesh_qpoints((mesh,) * 3)))
    res = []
    for name, q in out:
        reps, owner = bz_representatives(q, fc.primitive.cell)
        first = np.searchsorted(owner, np.arange(len(q)))  # one shortest representative per q
        res.append((name, reps[first]))
    return res


def throughput(nqs, repeats: int, sharded: bool, mesh: int | None = None) -> list:
    import phonopy
    from phonjax import dynmat
    from phonjax.io.phonopy import from_phonopy
    from phonjax.longrange import LongRange
    ph = phonopy.load(EXAMPLES / "phonopy_disp.yaml", force_sets_filename=EXAMPLES / "FORCE_SETS",
                      born_filename=EXAMPLES / "BORN", log_level=0)
    ph.produce_force_constants()
    fc = from_phonopy(ph)
    corr = LongRange("gonze").correction(fc)
    rows = []
    for name, q in _qsets(fc, nqs, mesh):
        nq = len(q)
        row = {"qset": name, "nq": nq, "n_prim": fc.primitive.n_atoms,
               "n_atoms_supercell": int(fc.supercell.crystal.n_atoms)}
        r = timed(lambda: dynmat.phonons(fc, q, corr), repeats)
        row["phonjax_s"], row["phonjax_compile_s"] = r["median_s"], r["compile_s_est"]
        fj = r["out"]
        row["phonjax_api_s"] = timed(lambda: fc.frequencies(q, lr="gonze"), repeats)["median_s"]

        def run_ph():
            ph.run_qpoints(q)
            return ph.qpoints.frequencies
        r = timed(run_ph, repeats, warmup=1)
        row["phonopy_s"] = r["median_s"]
        row["max_dfreq_THz"] = float(np.abs(np.asarray(r["out"]) - fj).max())
        if name.startswith("mesh"):
            # the same Γ-centred mesh as each code runs it for thermal properties: phonopy with its point group
            # and time reversal (run_mesh), phonjax with time reversal (thermal.mesh_thermal's q list)
            row["phonopy_run_mesh_symmetry_s"] = timed(lambda: ph.run_mesh([mesh] * 3, is_gamma_center=True),
                                                       repeats)["median_s"]
            row["phonopy_run_mesh_irreducible_q"] = int(len(ph.mesh.qpoints))
            from phonjax.thermal import time_reversal_mesh
            qtr = time_reversal_mesh((mesh,) * 3)[0]
            row["phonjax_time_reversal_mesh_s"] = timed(lambda: dynmat.phonons(fc, qtr, corr), repeats)["median_s"]
            row["phonjax_time_reversal_mesh_q"] = int(len(qtr))
            from phonjax.qmesh import irreducible_mesh  # phonjax's own path since the point-group reduction

            def ir_path():
                qir = irreducible_mesh((mesh,) * 3, fc.primitive)[0]
                return dynmat.phonons(fc, qir, corr)
            row["phonjax_irreducible_mesh_s"] = timed(ir_path, repeats)["median_s"]  # reduction included
            row["phonjax_irreducible_mesh_q"] = int(len(irreducible_mesh((mesh,) * 3, fc.primitive)[0]))
            row["speedup_mesh_path"] = row["phonopy_run_mesh_symmetry_s"] / row["phonjax_irreducible_mesh_s"]
        row["phonjax_q_per_s"] = nq / row["phonjax_s"]
        row["phonopy_q_per_s"] = nq / row["phonopy_s"]
        row["speedup"] = row["phonopy_s"] / row["phonjax_s"]
        row["speedup_api"] = row["phonopy_s"] / row["phonjax_api_s"]
        row["phonjax_stages_s"] = _stage_profile(fc, corr, q, repeats)
        if sharded:
            from phonjax.sharding import sharded_frequencies
            r = timed(lambda: sharded_frequencies(fc, q, lr="gonze"), repeats)
            row["sharded_s"], row["sharded_devices"] = r["median_s"], jax.device_count()
            row["sharded_max_dfreq_THz"] = float(np.abs(r["out"] - fj).max())
        print({k: v for k, v in row.items() if k != "phonjax_stages_s"}, flush=True)
        print("  stages:", {k: round(v * 1e3, 1) for k, v in row["phonjax_stages_s"].items()}, "ms", flush=True)
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
    ap.add_argument("--mesh", type=int, default=20, help="also an N×N×N Γ-centred mesh (0: none)")
    ap.add_argument("--repeats", type=int, default=5)
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
            rows += [dict(kind="throughput", **r) for r in throughput(args.nq, args.repeats, args.sharded, args.mesh)]
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
        x = np.arange(len(tp))
        a1.bar(x - 0.2, [r["phonjax_q_per_s"] for r in tp], 0.4, label="phonjax (correction built once, warm)")
        a1.bar(x + 0.2, [r["phonopy_q_per_s"] for r in tp], 0.4, color="k", label="phonopy run_qpoints")
        a1.set_xticks(x, [r["qset"] for r in tp])
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
