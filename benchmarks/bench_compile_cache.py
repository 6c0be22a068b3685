"""Issue 18 item 1: `phonjax predict` (LiF) and `phonjax finetune` (one tiny epoch: the first steps) each in a
fresh process, first with an empty persistent compilation cache (cold), then again with the same cache (warm):
wall time, XLA compilations, seconds in them (incl. cache reads) and in tracing/lowering, cache hits/misses.

    .venv/bin/python benchmarks/bench_compile_cache.py [--supercell-rule auto|cutoff|receptive] [--supercell N]
        → benchmarks/results/compile_cache_cpu.json

Default: the demo (``--supercell-rule auto``: with Born data the cutoff rule, 5³); ``receptive`` runs 11³.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _cold_warm import cold_warm, run_cli  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / ".cache" / "models" / "default"),
                    help="a phonjax model directory (default: the default model, linked by make demo)")
    ap.add_argument("--supercell-rule", default="auto", choices=("auto", "receptive", "cutoff"))
    ap.add_argument("--supercell", type=int, default=None)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "compile_cache_cpu.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="phonjax-bench-cc-"))
    res = {"meta": {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpu_count": os.cpu_count(),
                    "load_avg_start": os.getloadavg(), "model": args.model, "supercell_rule": args.supercell_rule,
                    "supercell": args.supercell,
                    "note": "compile fraction = backend_compile_s / wall_s (XLA compilations incl. persistent-"
                            "cache reads); tracing/lowering is Python work the cache cannot skip"}}

    def write():
        res["meta"]["load_avg_end"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")

    cli = ["predict", str(ROOT / "examples" / "LiF" / "POSCAR"), "--model", args.model, "--born",
           str(ROOT / "examples" / "LiF" / "BORN"), "--out", str(work / "predict")]
    cli += ["--supercell", str(args.supercell), "--allow-small-supercell"] if args.supercell else \
        ["--supercell-rule", args.supercell_rule]
    res["predict"] = cold_warm(cli, work / "xla-predict")
    write()
    if not args.skip_finetune:
        res["finetune_one_epoch"] = {}
        for tag in ("cold", "warm"):  # separate output directories: each run starts from scratch (no resume)
            ft = ["finetune", str(ROOT / "configs" / "finetune_lif.yaml"), "--set", f"model={args.model}",
                  "--set", f"out_dir={work / ('ft-' + tag)}", "--set", "training.max_epochs=1",
                  "--set", "data.max_structures=4"]
            print(f"  phonjax finetune (one epoch) [{tag}] ...", flush=True)
            res["finetune_one_epoch"][tag] = run_cli(ft, cache_dir=work / "xla-ft")
            write()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: {t: {a: b for a, b in v.items() if a != "tail"} for t, v in r.items()}
                      for k, r in res.items() if k != "meta"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
