"""Issue 18 item 3: peak memory and time of LiF home-cell force constants vs supercell (3³…13³) with the
automatic memory plan (``chunk_size="auto"``, no flags) for the default model (SevenNet-l3i5; any model
directory with ``--models DIR``) and an OAM-L-sized NequIP (random weights), each size in a fresh process
(peak RSS = the child's ru_maxrss, compilation included), next to the planner's estimate (phonjax.memory).

    .venv/bin/python benchmarks/bench_memory.py [--models default oam-l DIR] [--sizes 3 5 9 13]
        [--dtype float32] [--note "..."] → benchmarks/results/memory_cpu.json (rewritten after every point;
        rows of models/sizes not in this run are kept)
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import time

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[4] + "/tests")
import phonjax
from ase.build import bulk
from phonjax.memory import hvp_bytes_per_direction, available_memory
from phonjax.structure import Crystal, make_supercell
name, n, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if name == "default":  # the embedded default model (phonjax.defaults), converted into its cache if needed
    from phonjax.defaults import default_model
    model = default_model()
elif name != "oam-l":  # a phonjax model directory
    model = phonjax.load_model(name)
else:
    from model_fixtures import OAM_L
    model = phonjax.Model.init(phonjax.ModelConfig(**OAM_L, dtype=dtype), seed=0)
prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
sc = make_supercell(prim, n)
t = time.perf_counter()
fc = phonjax.force_constants(model, prim, sc, allow_small_supercell=True)
first = time.perf_counter() - t
t = time.perf_counter()
fc = phonjax.force_constants(model, prim, sc, allow_small_supercell=True)
warm = time.perf_counter() - t
g = model.graph(sc.crystal)
rep = fc.report
est = hvp_bytes_per_direction(model.config, g.n_node_capacity, g.n_edge_capacity, rep.edge_chunk or 0)
print("RESULT " + json.dumps({"model": name, "dtype": model.config.dtype, "N": n, "n_atoms": sc.crystal.n_atoms,
      "n_edges_capacity": g.n_edge_capacity, "n_hvp": rep.n_hvp, "chunk_size": rep.chunk_size,
      "edge_chunk": rep.edge_chunk, "first_s": round(first, 2), "warm_s": round(warm, 2),
      "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
      "estimate_per_direction_GiB": round(est / 2**30, 3), "budget_GiB": round(available_memory()[0] / 2**30, 2)}),
      flush=True)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "oam-l"],
                    help="'default' (the embedded default model), 'oam-l' (OAM-L-sized, random weights) or model dirs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 9, 13])
    ap.add_argument("--dtype", default="float32", help="OAM-L-sized network dtype")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory_cpu.json")
    ap.add_argument("--note", default="", help="what else ran on the machine (recorded in meta)")
    args = ap.parse_args(argv)
    res = {"meta": {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpu_count": os.cpu_count(),
                    "load_avg_start": os.getloadavg(), "note": args.note}, "rows": []}
    if args.out.exists():  # rows of other models / sizes from earlier runs stay (each row carries its own date)
        res["rows"] = [r for r in json.loads(args.out.read_text()).get("rows", [])
                       if not (r.get("model") in args.models and r.get("N") in args.sizes)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    for name in args.models:
        for n in args.sizes:
            print(f"{name} {n}³ ...", flush=True)
            t = time.perf_counter()
            try:
                p = subprocess.run([sys.executable, "-c", _CHILD, name, str(n), args.dtype, str(ROOT)], env=env,
                                   capture_output=True, text=True, timeout=args.timeout)
                rows = [json.loads(ln[7:]) for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                row = rows[-1] if rows else {"model": name, "N": n, "rc": p.returncode,
                                             "error": (p.stderr.strip().splitlines() or [""])[-1][:300]}
            except subprocess.TimeoutExpired:
                row = {"model": name, "N": n, "error": f"timeout after {args.timeout} s"}
            row["process_wall_s"] = round(time.perf_counter() - t, 2)
            row["date_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            row["load_avg"] = [round(x, 2) for x in os.getloadavg()]
            print(row, flush=True)
            res["rows"].append(row)
            res["meta"]["load_avg_end"] = os.getloadavg()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
