"""One-shot device check (GPU, or CPU at tiny sizes with ``--quick``): energy+forces, Hessian-vector products and
home-cell force constants of LiF at 3³/9³/13³ for SevenNet-0 (converted model directory) and an OAM-L-sized
NequIP (random weights, built here, no torch), ``phonjax predict`` in a cold and a warm process (persistent
compilation cache), and q-point throughput; one JSON written after every step (a crash keeps what was measured).

    python benchmarks/gpu_check.py --out gpu.json [--quick] [--budget-s 300] [--sizes 3 9 13]
        [--sevennet .cache/models/sevennet-0]

Items run in priority order (small sizes, predict, q-points, then 9³ and 13³); once ``--budget-s`` is spent the
rest is recorded as skipped. Times are wall seconds after ``block_until_ready``; "first" includes compilation.
Memory: the device's ``peak_bytes_in_use`` so far in this process (GPU) or the process's peak RSS (CPU).
Called by benchmarks/gpu_check.sh; no torch here.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import resource
import sys
import tempfile
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # peak memory is then what phonjax used
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[gpu_check +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Report:
    """The JSON being built; written after every item."""

    def __init__(self, path: Path, budget_s: float):
        self.path = path
        self.deadline = time.monotonic() + budget_s
        self.data = {"items": {}, "skipped": [], "errors": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - T0, 2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)

    def item(self, name: str, fn, *, need_s: float = 0.0) -> None:
        if self.left() < need_s:
            log(f"skip {name} (time budget: {self.left():.0f} s left)")
            self.data["skipped"].append(name)
            self.write()
            return
        log(f"{name} ...")
        t = time.monotonic()
        try:
            self.data["items"][name] = res = fn()
            log(f"{name} done in {time.monotonic() - t:.1f} s: {json.dumps(_brief(res), default=str)[:400]}")
        except Exception as e:  # record and go on: one failing item must not cost the others
            self.data["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
            log(f"{name} FAILED: {type(e).__name__}: {str(e)[:300]}")
            traceback.print_exc(limit=3)
        self.write()


def _brief(res):
    return {k: v for k, v in res.items() if not isinstance(v, (list, dict))} if isinstance(res, dict) else res


def memory() -> dict:
    import jax

    dev = jax.devices()[0]
    out = {"peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        st = dev.memory_stats() or {}
        for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit"):
            if k in st:
                out[k.replace("bytes", "GiB")] = round(st[k] / 2**30, 3)
    except Exception:  # CPU devices have no memory_stats in some versions
        pass
    return out


def meta() -> dict:
    import platform

    import jax
    from _common import package_versions

    vers = package_versions(("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "e3nn-jax", "numpy",
                             "ase", "phonopy"))
    devs = jax.devices()
    return {"python": platform.python_version(), "versions": vers, "backend": jax.default_backend(),
            "devices": [str(d) for d in devs], "device_kind": getattr(devs[0], "device_kind", ""),
            "cpu_count": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "memory": memory()}


def oam_l_model(quick: bool, dtype: str):
    """An OAM-L-sized NequIP (89 types, 6 layers, l_max 3, 9.6M parameters; tests/model_fixtures.OAM_L) with
    random weights; ``quick``: the small test architecture instead."""
    from model_fixtures import OAM_L, SMALL
    from phonjax.models.nequip.model import Model, ModelConfig

    arch = dict(SMALL if quick else OAM_L)
    return Model.init(ModelConfig(**arch, dtype=dtype), seed=0, metadata={"model_name": "OAM-L-sized (random)"})


def timed(fn, repeats: int = 3):
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return round(first, 4), round(min(ts), 5)


def model_at_size(model, prim, n: int, keep: dict | None = None) -> dict:
    """E+F and force constants (site-symmetry-reduced HVPs) of LiF n×n×n with ``model``."""
    import phonjax
    from phonjax.structure import make_supercell

    sc = make_supercell(prim, n)
    t = time.perf_counter()
    g = model.graph(sc.crystal)
    graph_s = time.perf_counter() - t
    row = {"N": n, "n_atoms": sc.crystal.n_atoms, "n_edges_capacity": g.n_edge_capacity,
           "graph_build_s": round(graph_s, 4)}
    row["ef_first_s"], row["ef_s"] = timed(lambda: model.energy_forces_stress(sc.crystal, graph=g)[1])
    row["mem_after_ef"] = memory()
    t = time.perf_counter()
    phonjax.force_constants(model, prim, sc, allow_small_supercell=True)
    row["fc_first_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    fc = phonjax.force_constants(model, prim, sc, allow_small_supercell=True)
    row["fc_s"] = round(time.perf_counter() - t, 4)
    row["n_hvp"] = fc.report.n_hvp
    row["chunk_size"], row["edge_chunk"] = fc.report.chunk_size, fc.report.edge_chunk  # automatic memory plan
    row["hvp_s"] = round(row["fc_s"] / fc.report.n_hvp, 5)  # upper bound: includes graph build and host work
    row["hvp_over_ef"] = round(row["hvp_s"] / row["ef_s"], 3) if row["ef_s"] else None
    row["mem_after_fc"] = memory()
    if keep is not None:
        keep["fc"] = fc
    return row


def fc_edge_chunk(model, prim, n: int, edge_chunk: int) -> dict:
    """Force constants with a fixed edge chunk (vs the automatic plan of :func:`model_at_size`)."""
    import phonjax

    phonjax.force_constants(model, prim, n, allow_small_supercell=True, edge_chunk=edge_chunk)
    t = time.perf_counter()
    fc = phonjax.force_constants(model, prim, n, allow_small_supercell=True, edge_chunk=edge_chunk)
    return {"N": n, "edge_chunk": edge_chunk, "chunk_size": fc.report.chunk_size,
            "fc_s": round(time.perf_counter() - t, 4), "mem": memory()}


def qpoints(fc, born, nq: int, mesh: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    q = rng.uniform(-0.5, 0.5, size=(nq, 3))
    g = (np.arange(mesh) / mesh)
    qm = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    out = {"n_random": nq, "mesh": mesh}
    for tag, qs in (("random", q), ("mesh", qm)):
        for lr in ("none", "gonze"):
            t = time.perf_counter()
            fc.frequencies(qs, lr=lr, born=born)
            first = time.perf_counter() - t
            t = time.perf_counter()
            fc.frequencies(qs, lr=lr, born=born)
            dt = time.perf_counter() - t
            out[f"{tag}_{lr}"] = {"first_s": round(first, 4), "s": round(dt, 4), "q_per_s": round(len(qs) / dt, 1)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and a small random model (CPU smoke test)")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip remaining items after this many seconds")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="supercells N (default 3 9 13; quick: 2 3)")
    ap.add_argument("--sevennet", type=Path, default=ROOT / ".cache" / "models" / "sevennet-0",
                    help="converted SevenNet-0 model directory")
    ap.add_argument("--oam-dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--pytest-rc", default=None, help="exit status of the test run (recorded)")
    ap.add_argument("--pytest-summary", default=None, help="last line of the test run (recorded)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([2, 3] if args.quick else [3, 9, 13])
    rep = Report(args.out, args.budget_s)
    rep.data["args"] = {k: str(v) for k, v in vars(args).items()}
    rep.data["tests"] = {"rc": args.pytest_rc, "summary": args.pytest_summary}
    rep.item("meta", meta)

    import phonjax
    from ase.build import bulk
    from phonjax.structure import Crystal

    prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
    born = phonjax.read_born(ROOT / "examples" / "LiF" / "BORN", prim)
    models = {}
    if (args.sevennet / "config.yaml").is_file():
        rep.item("load_sevennet", lambda: (models.__setitem__("sevennet-0", phonjax.load_model(args.sevennet)),
                                            {"describe": models["sevennet-0"].describe()})[1])
    else:
        rep.data["errors"]["load_sevennet"] = f"no converted model at {args.sevennet}"
    rep.item("build_oam_l", lambda: (models.__setitem__("oam-l", oam_l_model(args.quick, args.oam_dtype)),
                                      {"describe": models["oam-l"].describe()})[1])
    keep: dict = {}

    def size_items(n, need):
        for name, m in models.items():
            rep.item(f"{name}_{n}", lambda m=m, name=name: model_at_size(
                m, prim, n, keep if (name == "sevennet-0" and n == sizes[0]) else None), need_s=need)

    size_items(sizes[0], 0)
    if "sevennet-0" in models:
        from _cold_warm import cold_warm

        cache = Path(tempfile.mkdtemp(prefix="phonjax-xla-"))
        outd = Path(tempfile.mkdtemp(prefix="phonjax-predict-"))
        cli = ["predict", str(ROOT / "examples" / "LiF" / "POSCAR"), "--model", str(args.sevennet), "--born",
               str(ROOT / "examples" / "LiF" / "BORN"), "--out", str(outd)]
        if args.quick:
            cli += ["--supercell", "2", "--allow-small-supercell", "--npoints", "11"]
        rep.item("predict_cold_warm", lambda: cold_warm(cli, cache, log=log, timeout=max(60.0, rep.left())),
                 need_s=30)
    if "fc" in keep:
        rep.item("qpoints", lambda: qpoints(keep["fc"], born, 500 if args.quick else 10000, 4 if args.quick else 20),
                 need_s=10)
    for n in sizes[1:]:
        size_items(n, 20 if n < 13 else 45)
    if "sevennet-0" in models and len(sizes) > 1:  # the planner's edge chunk vs the CPU-measured default
        rep.item(f"sevennet-0_{sizes[1]}_edge_chunk_4096", lambda: fc_edge_chunk(
            models["sevennet-0"], prim, sizes[1], 4096), need_s=20)
    rep.data["memory_end"] = memory()
    rep.write()
    log(f"wrote {args.out} ({len(rep.data['items'])} items, {len(rep.data['errors'])} errors, "
        f"{len(rep.data['skipped'])} skipped)")
    return 0 if not rep.data["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
