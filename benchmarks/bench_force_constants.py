"""Benchmark: autodiff force constants of LiF (rock salt, a = 4.03 Å) for N×N×N supercells.

For each N: wall time of the home-cell rows (6 Hessian-vector products, jvp-of-grad vmapped, after a warm-up
compile), compile time, one energy+forces evaluation (jitted value_and_grad, median of repeats), the cost of
one HVP relative to one energy+forces (the physical floor is ≈ 2–3×), and peak memory (device
``peak_bytes_in_use`` when the backend reports it, else the process's max RSS). Writes JSON + a PNG plot.

Energies: the analytic pair potential (default), ``--arch small`` / ``--arch oam-l`` (randomly initialised
phonjax NequIP of that size), or ``--model DIR`` (a converted model).

    python benchmarks/bench_force_constants.py --sizes 3 5 7 9 11 13 --energy pair --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import resource
import statistics
import time

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's phonjax (editable installs may be stale)
import phonjax  # noqa: F401,E402  (x64)
import jax
import jax.numpy as jnp
from ase.build import bulk

from phonjax.force_constants import bound_energy, hvp_kernel, force_constants, hvp_directions
from phonjax.structure import Crystal, make_supercell

SMALL = dict(type_names=("Li", "F"), r_max=4.0, irreps_edge_sh="1x0e+1x1o+1x2e", type_embed_num_features=8,
             feature_irreps_hidden=("6x0e+4x1o+3x2e", "5x0e+3x1o+2x2e", "6x0e"), radial_mlp_depth=(1, 2, 1),
             radial_mlp_width=(12, 10, 8), num_bessels=8, avg_num_neighbors=17.3)
OAM_L = dict(type_names=("Li", "F"), r_max=6.0, irreps_edge_sh="1x0e+1x1o+1x2e+1x3o", type_embed_num_features=48,
             feature_irreps_hidden=("128x0e+64x1o+32x2e+32x3o",) * 5 + ("128x0e",), radial_mlp_depth=(1,) * 6,
             radial_mlp_width=(128,) * 6, num_bessels=8, avg_num_neighbors=62.0)


def make_energy(kind: str, model_dir: str | None, dtype: str):
    if model_dir:
        from phonjax.models import load_model
        return load_model(model_dir), f"model:{model_dir}"
    if kind == "pair":
        from phonjax.potentials import rock_salt_potential
        return rock_salt_potential(4.03, "Li", "F"), "pair (LJ rock salt, r_c 5.04 Å)"
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig
    cfg = ModelConfig(**(SMALL if kind == "small" else OAM_L), dtype=dtype)
    return Model.init(cfg, seed=0), f"nequip-{kind} ({dtype}, random weights)"


def peak_memory() -> dict:
    out = {"max_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_MiB"] = stats["peak_bytes_in_use"] / 2 ** 20
    except Exception:
        pass
    return out


def bench_one(energy_obj, n: int, repeats: int, chunk_size: int | None) -> dict:
    prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
    sc = make_supercell(prim, n)
    e = bound_energy(energy_obj, sc.crystal)
    pos, cell = jnp.asarray(sc.crystal.positions), jnp.asarray(sc.crystal.cell)
    ef = jax.jit(jax.value_and_grad(lambda x: e(x, cell)))
    jax.block_until_ready(ef(pos))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(ef(pos))
        ts.append(time.perf_counter() - t)
    t_ef = statistics.median(ts)
    t = time.perf_counter()
    fc = force_constants(energy_obj, prim, sc, chunk_size=chunk_size)  # includes compilation
    t_first = time.perf_counter() - t
    ts = []
    for _ in range(max(1, repeats // 2)):
        t = time.perf_counter()
        fc = force_constants(energy_obj, prim, sc, chunk_size=chunk_size)
        ts.append(time.perf_counter() - t)
    t_fc = statistics.median(ts)
    n_hvp = fc.report.n_hvp
    V = jnp.asarray(hvp_directions(sc)[0])
    ek = bound_energy(energy_obj, sc.crystal)
    jax.block_until_ready(hvp_kernel(ek, pos, cell, V, "jvp", None))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(hvp_kernel(ek, pos, cell, V, "jvp", None))
        ts.append(time.perf_counter() - t)
    t_k = statistics.median(ts)
    return {"N": n, "n_atoms": int(sc.crystal.n_atoms), "t_energy_forces_s": t_ef, "t_fc_s": t_fc,
            "t_hvp_kernel_s": t_k, "hvp_kernel_over_ef": t_k / n_hvp / t_ef,
            "t_fc_first_call_s": t_first, "compile_s_est": max(0.0, t_first - t_fc), "n_hvp": n_hvp,
            "hvp_over_ef": t_fc / n_hvp / t_ef, "asr_violation": fc.report.asr_before, **peak_memory()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13])
    ap.add_argument("--energy", choices=("pair", "small", "oam-l"), default="pair")
    ap.add_argument("--model", default=None, help="phonjax model directory (overrides --energy)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="stop growing N after a step this slow")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    energy_obj, label = make_energy(args.energy, args.model, args.dtype)
    rows = []
    meta = {"energy": label, "backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "jax": jax.__version__, "machine": platform.machine(), "chunk_size": args.chunk_size}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"fc_lif_{args.energy if not args.model else 'model'}_{jax.default_backend()}"
    for n in args.sizes:
        r = bench_one(energy_obj, n, args.repeats, args.chunk_size)
        rows.append(r)
        print(json.dumps(r), flush=True)
        # written after every size, so a run cut short keeps what it measured
        (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        if r["t_fc_first_call_s"] > args.max_seconds:
            break
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    na = [r["n_atoms"] for r in rows]
    a1.loglog(na, [r["t_fc_s"] for r in rows], "o-", label="force constants (6 HVPs)")
    a1.loglog(na, [r["t_energy_forces_s"] for r in rows], "s--", label="energy + forces")
    a1.set_xlabel("atoms in supercell")
    a1.set_ylabel("wall time (s)")
    a1.legend()
    a2.semilogx(na, [r["hvp_kernel_over_ef"] for r in rows], "o-", label="HVP kernel")
    a2.semilogx(na, [r["hvp_over_ef"] for r in rows], "s--", label="whole force_constants() call")
    a2.axhspan(2, 3, color="0.9", label="physical floor 2–3×")
    a2.set_xlabel("atoms in supercell")
    a2.set_ylabel("cost of one HVP / energy+forces")
    a2.legend()
    fig.suptitle(f"LiF force constants: {label}, {meta['backend']}")
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)
    print(f"wrote {args.out / (stem + '.json')} and .png")


if __name__ == "__main__":
    main()
