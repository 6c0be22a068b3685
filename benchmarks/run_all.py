"""Run the CPU benchmark suite at reduced sizes (`make bench`): ≈ 10–15 minutes on 2 cores.

Each benchmark runs in its own process (fresh memory statistics, no shared compilation caches) and writes its
JSON + PNG under benchmarks/results/ (or ``--out``). Larger sizes: run the scripts directly, e.g.

    python benchmarks/bench_vs_torch.py --arch oam-l --sizes 2 3 4 5 6 7 8 9 --lowsym
    python benchmarks/bench_workflow.py --arch oam-l --lif-n 6 --lowsym-n 3

``--full`` runs those larger settings (hours on CPU; minutes on a GPU).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import subprocess
import sys
import time

HERE = Path(__file__).resolve().parent

QUICK = [
    ("bench_vs_torch.py", ["--arch", "small", "--sizes", "2", "3", "--lowsym", "--repeats", "2", "--linearize"]),
    ("bench_workflow.py", ["--arch", "small", "--lif-n", "3", "--lowsym-n", "2", "--npoints", "51"]),
    ("bench_qpoints.py", ["--nq", "1000", "10000", "--mem-sizes", "3", "5", "7", "--mem-energy", "small"]),
    ("bench_force_constants.py", ["--sizes", "3", "5", "7", "--energy", "pair", "--repeats", "3"]),
]
FULL = [
    ("bench_vs_torch.py", ["--arch", "small", "--sizes", "2", "3", "4", "5", "6", "7", "8", "9", "--lowsym"]),
    ("bench_vs_torch.py", ["--arch", "oam-l", "--sizes", "2", "3", "4", "5", "6", "7", "8", "9", "--lowsym",
                           "--repeats", "1"]),
    ("bench_workflow.py", ["--arch", "oam-l", "--lif-n", "6", "--lowsym-n", "3"]),
    ("bench_qpoints.py", ["--nq", "1000", "10000", "100000", "--mem-sizes", "3", "5", "7", "9", "11"]),
    ("bench_force_constants.py", ["--sizes", "3", "5", "7", "9", "11", "13", "--energy", "small"]),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="script names to run (default: all)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    failed = []
    t0 = time.perf_counter()
    for script, opts in (FULL if args.full else QUICK):
        if args.only and script not in args.only and script.removesuffix(".py") not in args.only:
            continue
        extra = []
        if args.out:
            name = script.removesuffix(".py")
            extra = ["--out", str(Path(args.out) / f"{name}.json")] if script != "bench_force_constants.py" \
                else ["--out", args.out]
        cmd = [sys.executable, str(HERE / script), *opts, *extra]
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"=== {script}: rc {rc}, {time.perf_counter() - t:.0f} s", flush=True)
        if rc:
            failed.append(script)
    print(f"\nsuite done in {time.perf_counter() - t0:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
