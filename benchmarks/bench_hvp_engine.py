"""Benchmark (issue 18, item 4): the HVP engine per Hessian row against torch nequip's double backward, in the
SAME dtype, on the SAME weights.

For each dtype (float32, float64) a random perturbed torch nequip model (tests/model_fixtures.py, "oam-l" = OAM-L
layer sizes with 89 types, or "small") is built in that dtype and converted with
``phonjax.convert.nequip.from_torch_module`` to a phonjax model of the same dtype. For each LiF N×N×N supercell:

* torch (eager, warmed up 3 calls per shape): energy alone, energy+forces, the six home-cell Hessian rows by
  double backward (one forward + create_graph gradient, one backward per row: the rows share the forward).
* phonjax (jit, automatic edge chunks): energy alone, energy+forces, the six rows as one kernel of vmapped
  Hessian-vector products and one HVP alone, in the engine's default mode "edge" (the displaced atoms' edges as
  a separate input, :mod:`phonjax.hvp`) and in mode "jvp" (jvp of grad over every edge; keys ``*_jvp``).
* check: torch rows vs phonjax rows (same weights).

Ratios are measured in the same run: ``rows_speedup`` = torch six rows / phonjax six rows (per row, both share
their forward), ``hvp_over_ef`` = one row of the six / one energy+forces. Medians after warm-up; compile time
(first call − best) separately. The supercells are smaller than the model's receptive field: timings only.

    python benchmarks/bench_hvp_engine.py --arch oam-l --sizes 3 --repeats 2
"""
from __future__ import annotations

import argparse
from pathlib import Path
import time

import numpy as np

from _common import RESULTS, TorchSystem, block, lif_primitive, max_rss_mib, metadata, timed, write_json

import jax  # noqa: E402

from phonjax.force_constants import bound_energy, hvp_directions, hvp_kernel  # noqa: E402
from phonjax.hvp import active_edges, hvp_edge_kernel  # noqa: E402
from phonjax.structure import Crystal, make_supercell  # noqa: E402
from phonjax.xla_options import kernel_jit  # noqa: E402  (the engine's compile options, as hvp_kernel's)

TORCH_WARMUP = 3


@kernel_jit
def _e(energy, positions, cell):
    return energy(positions, cell)


@kernel_jit
def _ef(energy, positions, cell):
    return jax.value_and_grad(lambda x: energy(x, cell))(positions)


def build(arch_name: str, dtype: str, seed: int = 0):
    """(torch model in ``dtype``, phonjax model in ``dtype``) on the same weights."""
    import model_fixtures as mf
    from _common import arch
    from phonjax.convert.nequip import from_torch_module
    tm = mf.build_torch_model(arch(arch_name), seed=seed, dtype=dtype, zbl=True)
    return tm, from_torch_module(tm, dtype=dtype, check=False)


def bench(tag: str, tm, model, N: int, repeats: int, with_torch: bool = True) -> dict:
    import jax.numpy as jnp
    prim = Crystal.coerce(lif_primitive())
    sc = make_supercell(prim, N)
    n, ns = prim.n_atoms, sc.crystal.n_atoms
    row = {"dtype": tag, "N": N, "n_atoms": ns, "n_rows": 3 * n}
    energy = bound_energy(model, sc.crystal)
    row["edge_chunk"], row["n_edges"] = int(energy.func.edge_chunk), int(energy.graph.n_edge_capacity)
    pos, cell = jnp.asarray(sc.crystal.positions), jnp.asarray(sc.crystal.cell)
    V = jnp.asarray(hvp_directions(sc)[0])
    act = active_edges(energy.graph, np.arange(n))
    row["n_active_edges"] = int(np.sum(np.asarray(act[1])))
    out = {}
    for key, fn in (("e", lambda: block(_e(energy, pos, cell))), ("ef", lambda: block(_ef(energy, pos, cell))),
                    ("hvp1_jvp", lambda: block(hvp_kernel(energy, pos, cell, V[:1], "jvp", None))),
                    ("rows_jvp", lambda: block(hvp_kernel(energy, pos, cell, V, "jvp", None))),
                    ("hvp1", lambda: block(hvp_edge_kernel(energy, pos, cell, V[:1], act, None))),
                    ("rows", lambda: block(hvp_edge_kernel(energy, pos, cell, V, act, None)))):
        r = timed(fn, repeats)
        out[key] = r["out"]
        row[f"jax_{key}_s"], row[f"jax_{key}_compile_s"] = r["median_s"], r["compile_s_est"]
        print(f"  {tag} N={N} phonjax {key}: {r['median_s']:.3f} s (compile {r['compile_s_est']:.1f} s)", flush=True)
    h = np.asarray(out["rows"])  # (3n, ns, 3): row (i, a) = H e_ia
    row["edge_vs_jvp_max_abs_rows"] = float(np.abs(h - np.asarray(out["rows_jvp"])).max())  # eV/Å²
    row["jax_hvp_over_ef"] = row["jax_rows_s"] / row["n_rows"] / row["jax_ef_s"]
    row["jax_hvp1_over_ef"] = row["jax_hvp1_s"] / row["jax_ef_s"]
    row["jax_hvp_over_ef_jvp"] = row["jax_rows_jvp_s"] / row["n_rows"] / row["jax_ef_s"]
    row["jax_hvp1_over_ef_jvp"] = row["jax_hvp1_jvp_s"] / row["jax_ef_s"]
    row["edge_speedup_rows"] = row["jax_rows_jvp_s"] / row["jax_rows_s"]
    row["edge_speedup_hvp1"] = row["jax_hvp1_jvp_s"] / row["jax_hvp1_s"]
    row["max_rss_MiB"] = max_rss_mib()
    if not with_torch:
        return row
    ts = TorchSystem(tm, sc.crystal.to_ase())
    t0 = time.perf_counter()
    for key, fn in (("e", lambda: ts._energy(ts.data["pos"]).item()), ("ef", ts.energy_forces),
                    ("rows", lambda: ts.rows([(i, a) for i in range(n) for a in range(3)]))):
        r = timed(fn, repeats, warmup=TORCH_WARMUP if key != "rows" else 1)
        row[f"torch_{key}_s"] = r["median_s"]
        print(f"  {tag} N={N} torch {key}: {r['median_s']:.3f} s", flush=True)
    row["torch_wall_s"] = time.perf_counter() - t0
    row["torch_vs_jax_max_abs_rows"] = float(np.abs(np.asarray(r["out"]) - h).max())  # eV/Å²
    row["rows_speedup"] = row["torch_rows_s"] / row["jax_rows_s"]
    row["rows_speedup_jvp"] = row["torch_rows_s"] / row["jax_rows_jvp_s"]
    row["ef_speedup"] = row["torch_ef_s"] / row["jax_ef_s"]
    row["e_speedup"] = row["torch_e_s"] / row["jax_e_s"]
    row["torch_row_over_ef"] = row["torch_rows_s"] / row["n_rows"] / row["torch_ef_s"]
    row["max_rss_MiB"] = max_rss_mib()
    return row


def extrapolate_torch(rows) -> None:
    """Rows without torch timings (``--torch-max``) get ``torch_rows_s_extrapolated``: a power law t = c·n^p fitted
    to the same dtype's measured torch rows (≥ 2 sizes), and the ratio to phonjax from it — marked as such."""
    for r in rows:
        if "torch_rows_s" in r:
            continue
        meas = [(x["n_atoms"], x["torch_rows_s"]) for x in rows if x["dtype"] == r["dtype"] and "torch_rows_s" in x]
        if len(meas) < 2:
            continue
        p, logc = np.polyfit(np.log([m[0] for m in meas]), np.log([m[1] for m in meas]), 1)
        r["torch_rows_s_extrapolated"] = float(np.exp(logc) * r["n_atoms"] ** p)
        r["torch_extrapolation"] = {"power": float(p), "from_n_atoms": [m[0] for m in meas]}
        r["rows_speedup_extrapolated"] = r["torch_rows_s_extrapolated"] / r["jax_rows_s"]


def plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    rows = [r for r in rows if "torch_rows_s" in r]
    labels = [f"{r['dtype']} {r['N']}³" for r in rows]
    x = np.arange(len(rows))
    for k, (key, lab) in enumerate((("e", "energy"), ("ef", "energy+forces"), ("rows", "six rows / 6"))):
        div = [r["n_rows"] if key == "rows" else 1 for r in rows]
        ax.bar(x + (2 * k - 5) * 0.08, [r[f"torch_{key}_s"] / d for r, d in zip(rows, div)], 0.16, label=f"torch {lab}")
        ax.bar(x + (2 * k - 4) * 0.08, [r[f"jax_{key}_s"] / d for r, d in zip(rows, div)], 0.16, label=f"phonjax {lab}")
    ax.set_xticks(x, labels)
    ax.set_ylabel("s")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("small", "oam-l"), default="oam-l")
    ap.add_argument("--sizes", type=int, nargs="*", default=[3], help="LiF N×N×N supercells")
    ap.add_argument("--dtypes", nargs="*", default=["float32", "float64"], choices=("float32", "float64"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--note", default="", help="what else ran on the machine")
    ap.add_argument("--torch-max", type=int, default=None,
                    help="sizes above this run phonjax only; torch is extrapolated from its measured sizes")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default: benchmarks/results/hvp_engine_<arch>_<backend>.json; rows of "
                         "earlier runs in it are kept unless remeasured)")
    args = ap.parse_args(argv)
    out = args.out or RESULTS / f"hvp_engine_{args.arch}_{jax.default_backend()}.json"
    meta = metadata({"arch": args.arch, "torch_mode": "eager", "note": args.note, "repeats": args.repeats})
    rows = []  # rows of earlier runs at other (dtype, N) are kept, each with its own date and note
    if out.exists():
        import json
        old = json.loads(out.read_text())
        rows = [dict(r, date=r.get("date", old["meta"].get("date")), note=r.get("note", old["meta"].get("note")))
                for r in old["rows"]]
    for dtype in args.dtypes:
        tm, model = build(args.arch, dtype)
        for N in args.sizes:
            with_torch = args.torch_max is None or N <= args.torch_max
            row = bench(dtype.replace("float", "f"), tm, model, N, args.repeats, with_torch)
            row.update(date=meta["date"], note=args.note)
            rows = [r for r in rows if (r["dtype"], r["N"]) != (row["dtype"], N)] + [row]
            extrapolate_torch(rows)
            write_json(out, meta, rows)  # after every size: a run cut short keeps what it measured
    plot(rows, out.with_suffix(".png"), f"{args.arch}: torch double backward vs phonjax HVP, same weights, same dtype")
    for r in rows:
        if "torch_rows_s" not in r:
            print(f"{r['dtype']} {r['N']}³: rows phonjax {r['jax_rows_s']:.2f} s, torch extrapolated "
                  f"{r.get('torch_rows_s_extrapolated', float('nan')):.1f} s "
                  f"({r.get('rows_speedup_extrapolated', float('nan')):.2f}×, extrapolated)")
            continue
        print(f"{r['dtype']} {r['N']}³: rows torch {r['torch_rows_s']:.2f} s / phonjax {r['jax_rows_s']:.2f} s = "
              f"{r['rows_speedup']:.2f}×; E+F {r['ef_speedup']:.2f}×; phonjax row/E+F {r['jax_hvp_over_ef']:.2f}, "
              f"torch {r['torch_row_over_ef']:.2f}; |Δ| {r['torch_vs_jax_max_abs_rows']:.1e}")
    print(f"wrote {out} and .png")


if __name__ == "__main__":
    main()
