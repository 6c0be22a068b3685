"""Issue 18 item 1: what XLA:CPU's YNNPACK fusions cost the force-constant kernel — compile, load from the
persistent cache, and run — with them (jaxlib's default) and without (``xla_cpu_experimental_ynn_fusion_type``
set to none, what :mod:`phonjax.xla_options` passes to phonjax's kernels on CPU).

A warm ``phonjax predict`` compiles nothing but still deserializes each cached executable; with YNNPACK fusions
the HVP executable carries one YNN subgraph per fused op (thousands for a 5-layer l_max 3 model), rebuilt at
every load. Same inputs, one process, variants interleaved; each executable is serialized and loaded back as
the persistent cache does.

    .venv/bin/python benchmarks/bench_cpu_fusions.py [--model DIR] [--supercell 5] [--repeats 3]
        → benchmarks/results/cpu_fusions_cpu.json + .png
"""
from __future__ import annotations

import argparse
from pathlib import Path
import time

import numpy as np

from _common import RESULTS, ROOT, metadata, write_json  # noqa: E402  (sets sys.path)
from ase.io import read  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.experimental import serialize_executable as se  # noqa: E402

from phonjax.force_constants import _node_capacity, _pad_atoms, _plan_memory, hvp_directions  # noqa: E402
from phonjax.hvp import hvp_map  # noqa: E402
from phonjax.models import load_model  # noqa: E402
from phonjax.structure import Crystal, make_supercell, supercell_matrix  # noqa: E402
from phonjax.symmetry import plan_rows  # noqa: E402
from phonjax.xla_options import NO_YNN  # noqa: E402

VARIANTS = {"ynn (jaxlib default)": None, "no ynn (phonjax)": NO_YNN}


def _inputs(model, n: int):
    sc = make_supercell(Crystal.coerce(read(ROOT / "examples" / "LiF" / "POSCAR")), supercell_matrix(n))  # the demo's
    V, _, _ = hvp_directions(sc, plan_rows(sc))
    energy, chunk, _ = _plan_memory(model, sc.crystal, len(V), None, "auto", None)
    cap = _node_capacity(energy, sc.crystal.n_atoms)
    pos = jnp.asarray(_pad_atoms(sc.crystal.positions, cap))
    Vc = jnp.asarray(np.stack([_pad_atoms(v, cap) for v in V]))
    return energy, pos, jnp.asarray(sc.crystal.cell), Vc, chunk, sc.crystal.n_atoms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / ".cache" / "models" / "default"))
    ap.add_argument("--supercell", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_fusions_cpu.json")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    energy, pos, cell, V, chunk, n_atoms = _inputs(model, args.supercell)

    def fn(e, p, c, v):
        return hvp_map(e, p, c, v, "jvp", chunk)

    rows, out = [], {}
    for name, opts in VARIANTS.items():
        jitted = jax.jit(fn, compiler_options=opts)
        t = time.perf_counter()
        lowered = jitted.lower(energy, pos, cell, V)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        blob, in_tree, out_tree = se.serialize(compiled)
        loads = []
        for _ in range(2):
            t = time.perf_counter()
            loaded = se.deserialize_and_load(blob, in_tree, out_tree)
            loads.append(time.perf_counter() - t)
        jax.block_until_ready(loaded(energy, pos, cell, V))  # first run outside the timing
        rows.append({"variant": name, "compiler_options": opts, "compile_s": compile_s,
                     "serialized_mb": len(blob) / 2 ** 20, "load_s": min(loads),
                     "ynn_fusions": compiled.as_text().count("__ynn_fusion"), "run_s": []})
        out[name] = loaded
        print(f"{name}: compile {compile_s:.1f} s, {len(blob) / 2 ** 20:.1f} MiB, load {min(loads):.2f} s",
              flush=True)
    for _ in range(args.repeats):  # interleaved: the variants see the same machine load
        for r in rows:
            t = time.perf_counter()
            h = jax.block_until_ready(out[r["variant"]](energy, pos, cell, V))
            r["run_s"].append(time.perf_counter() - t)
            r["hvp"] = np.asarray(h, np.float64)
    ref = rows[0].pop("hvp")
    rows[0]["max_rel_diff_vs_default"] = 0.0
    for r in rows[1:]:
        h = r.pop("hvp")
        r["max_rel_diff_vs_default"] = float(np.abs(h - ref).max() / np.abs(ref).max())
    for r in rows:
        r["run_median_s"] = float(np.median(r["run_s"]))
        print(f"{r['variant']}: run {r['run_median_s']:.2f} s (median of {args.repeats}), load {r['load_s']:.2f} s,"
              f" max rel diff {r['max_rel_diff_vs_default']:.1e}", flush=True)
    meta = metadata({"benchmark": "cpu_fusions", "model": args.model, "dtype": str(pos.dtype),
                     "model_dtype": str(getattr(model, "dtype", "")), "crystal": "LiF",
                     "supercell": args.supercell, "n_atoms": n_atoms, "n_directions": int(V.shape[0]),
                     "chunk_size": chunk, "ratio_load_default_over_phonjax": rows[0]["load_s"] / rows[1]["load_s"],
                     "ratio_run_default_over_phonjax": rows[0]["run_median_s"] / rows[1]["run_median_s"]})
    write_json(args.out, meta, rows)
    _plot(rows, args.out.with_suffix(".png"), meta)
    return 0


def _plot(rows, path: Path, meta) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    keys = ("compile_s", "load_s", "run_median_s")
    x = np.arange(len(keys))
    for k, r in enumerate(rows):
        ax.bar(x + 0.38 * k, [r[q] for q in keys], 0.38, label=r["variant"])
    ax.set_xticks(x + 0.19, ["compile", "load from cache", "run (one call)"])
    ax.set_ylabel("s")
    ax.set_title(f"HVP kernel, LiF {meta['supercell']}³ ({meta['n_directions']} directions), CPU", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
