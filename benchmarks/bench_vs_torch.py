"""Benchmark: phonjax (jit) vs torch nequip (eager) on the SAME weights — energy+forces, one Hessian-vector
product, home-cell force constants (issues 8 and 11).

A random perturbed torch nequip model (tests/model_fixtures.py: "small", or "oam-l" = OAM-L layer sizes with
89 types) is converted with ``phonjax.convert.nequip.from_torch_module`` to a float64 phonjax model and to one with a
float32 network (SH/Bessel inputs, per-atom energy sums and force constants stay float64). For each structure
(LiF N×N×N supercells and an 8-atom triclinic Li4F4 cell in a 2×2×2 supercell):

* torch (warmed up with 3 calls per shape: TorchScript's profiling executor re-optimises over the first
  calls; first-call times are reported too): E+F through the model (its own autograd forces); home-cell rows by double backward (one forward +
  create_graph gradient, then one backward per row: 3·n_prim rows); one HVP = the same with one row.
* phonjax: jitted value_and_grad; one HVP (jvp of grad); ``force_constants`` with all 3·n_prim rows and with
  the site-symmetry-reduced rows (``symmetry=True``); float32 network vs float64.
* checks: torch rows vs phonjax rows (same weights: ~1e-12 eV/Å²), and the frequency change float32 → float64
  (max |Δν| over commensurate + random q, THz; the float32 network is adoptable if ≤ 1e-3 THz).

Medians over ``--repeats`` after a warm-up; compile time (first call − median) reported separately. The
supercells are usually smaller than the models' cutoff spheres: timings only (``allow_small_supercell``).

    python benchmarks/bench_vs_torch.py --arch small --sizes 2 3 4 --lowsym
    python benchmarks/bench_vs_torch.py --arch oam-l --sizes 2 3 --repeats 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import (RESULTS, TorchSystem, block, build_pair, lif_primitive, low_symmetry_cell, max_rss_mib,
                     metadata, timed, write_json)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from phonjax.force_constants import bound_energy, hvp_kernel, force_constants, hvp_directions  # noqa: E402
from phonjax.structure import Crystal, commensurate_qpoints, make_supercell  # noqa: E402


@jax.jit
def _ef(energy, positions, cell):
    """E and dE/dx; the energy Partial is an argument (its params are not constant-folded into the program)."""
    return jax.value_and_grad(lambda x: energy(x, cell))(positions)


TORCH_WARMUP = 3


def _fc(model, prim, sc, symmetry: bool):
    return force_constants(model, prim, sc, symmetry=symmetry, allow_small_supercell=True)


def bench_structure(label: str, prim: Crystal, N: int, tm, m64, m32, repeats: int, torch_on: bool,
                    max_torch_s: float, linearize: bool = False) -> dict:
    sc = make_supercell(prim, N)
    n, ns = prim.n_atoms, sc.crystal.n_atoms
    row = {"structure": label, "N": N, "n_prim": n, "n_atoms": ns}
    pos, cell = jnp.asarray(sc.crystal.positions), jnp.asarray(sc.crystal.cell)
    V = jnp.asarray(hvp_directions(sc)[0])
    for tag, model in (("f64", m64), ("f32", m32)):
        e = bound_energy(model, sc.crystal)
        r = timed(lambda: block(_ef(e, pos, cell)), repeats)
        row[f"jax_{tag}_ef_s"], row[f"jax_{tag}_ef_compile_s"] = r["median_s"], r["compile_s_est"]
        r = timed(lambda: block(hvp_kernel(e, pos, cell, V[:1], "jvp", None)), repeats)
        row[f"jax_{tag}_hvp1_s"] = r["median_s"]
        r = timed(lambda: block(hvp_kernel(e, pos, cell, V, "jvp", None)), repeats)
        row[f"jax_{tag}_hvp_rows_kernel_s"] = r["median_s"]
        for sym in (False, True):
            key = f"jax_{tag}_fc_{'sym' if sym else 'full'}"
            r = timed(lambda: _fc(model, prim, sc, sym), repeats)
            row[key + "_s"], row[key + "_compile_s"] = r["median_s"], r["compile_s_est"]
            row[key + "_n_hvp"] = r["out"].report.n_hvp
            row[f"_fc_{tag}_{int(sym)}"] = r["out"]
    if linearize:  # jax.linearize once + vmapped tangent map, vs vmapped jvp-of-grad (primal shared by vmap too)
        r = timed(lambda: force_constants(m64, prim, sc, mode="linearize", allow_small_supercell=True), repeats)
        row["jax_f64_fc_full_linearize_s"] = r["median_s"]
        row["linearize_vs_jvp_max_abs_fc"] = float(np.abs(r["out"].fc - row["_fc_f64_0"].fc).max())
    fc64, fc64s, fc32s = row.pop("_fc_f64_0"), row.pop("_fc_f64_1"), row.pop("_fc_f32_1")
    row.pop("_fc_f32_0")
    row["jax_hvp_over_ef"] = row["jax_f64_hvp_rows_kernel_s"] / (3 * n) / row["jax_f64_ef_s"]
    row["jax_hvp1_over_ef"] = row["jax_f64_hvp1_s"] / row["jax_f64_ef_s"]
    row["sym_vs_full_max_abs_fc"] = float(np.abs(fc64s.fc - fc64.fc).max())
    q = np.concatenate([commensurate_qpoints(sc.matrix), np.random.default_rng(0).uniform(-0.5, 0.5, (16, 3))])
    f64, f32 = fc64s.frequencies(q, lr="none"), fc32s.frequencies(q, lr="none")
    row["f32_vs_f64_max_dfreq_THz"] = float(np.abs(f32 - f64).max())
    row["f32_vs_f64_max_abs_fc"] = float(np.abs(fc32s.fc - fc64s.fc).max())
    row["sym_vs_full_max_dfreq_THz"] = float(np.abs(fc64.frequencies(q, lr="none") - f64).max())
    if torch_on:
        ts = TorchSystem(tm, sc.crystal.to_ase())
        # TorchScript (nequip/e3nn scripted modules) profiles and re-optimises over the first calls of a
        # shape: warm up several times, and report the first call separately
        r = timed(lambda: ts.energy_forces(), repeats, warmup=TORCH_WARMUP)
        row["torch_ef_s"], row["torch_ef_first_s"] = r["median_s"], r["first_s"]
        r = timed(lambda: ts.rows([(0, 0)]), repeats, warmup=TORCH_WARMUP)
        row["torch_hvp1_s"], row["torch_hvp1_first_s"] = r["median_s"], r["first_s"]
        if row["torch_hvp1_s"] * 3 * n <= max_torch_s:
            rows = [(i, a) for i in range(n) for a in range(3)]
            r = timed(lambda: ts.rows(rows), max(1, repeats // 2), warmup=0)
            row["torch_fc_rows_s"] = r["median_s"]
            R = r["out"].reshape(n, 3, ns, 3).transpose(0, 2, 1, 3)
            raw = force_constants(m64, prim, sc, symmetrize=False, asr=None, allow_small_supercell=True)
            row["torch_vs_jax_max_abs_fc"] = float(np.abs(R - raw.fc).max())
        else:  # estimated from one row (shared forward, so an upper bound)
            row["torch_fc_rows_s_est"] = row["torch_hvp1_s"] * 3 * n
        t_t = row.get("torch_fc_rows_s", row.get("torch_fc_rows_s_est"))
        row["speedup_ef"] = row["torch_ef_s"] / row["jax_f64_ef_s"]
        row["speedup_hvp1"] = row["torch_hvp1_s"] / row["jax_f64_hvp1_s"]
        row["speedup_fc_full_f64"] = t_t / row["jax_f64_fc_full_s"]
        row["speedup_fc_sym_f64"] = t_t / row["jax_f64_fc_sym_s"]
        row["speedup_fc_sym_f32"] = t_t / row["jax_f32_fc_sym_s"]
        row["torch_hvp1_over_ef"] = row["torch_hvp1_s"] / row["torch_ef_s"]
    row["max_rss_MiB"] = max_rss_mib()
    return row


def plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lif = [r for r in rows if r["structure"] == "LiF"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, lab, st in (("torch_fc_rows_s", "torch nequip, 6 double-backward rows", "k^-"),
                         ("jax_f64_fc_full_s", "phonjax f64, 6 rows", "o-"),
                         ("jax_f64_fc_sym_s", "phonjax f64, symmetry-reduced rows", "s-"),
                         ("jax_f32_fc_sym_s", "phonjax f32 network, reduced rows", "d--"),
                         ("torch_ef_s", "torch E+F", "kx:"), ("jax_f64_ef_s", "phonjax E+F", "o:")):
        pts = [(r["n_atoms"], r.get(key, r.get(key + "_est"))) for r in lif if r.get(key, r.get(key + "_est"))]
        if pts:
            a1.loglog(*zip(*pts), st, label=lab)
    a1.set_xlabel("atoms in supercell")
    a1.set_ylabel("wall time (s)")
    a1.legend(fontsize=7)
    for key, lab in (("speedup_fc_sym_f64", "FC: torch rows / phonjax reduced (f64)"),
                     ("speedup_fc_full_f64", "FC: torch rows / phonjax 6 rows (f64)"),
                     ("speedup_ef", "E+F: torch / phonjax")):
        pts = [(r["n_atoms"], r[key]) for r in lif if key in r]
        if pts:
            a2.semilogx(*zip(*pts), "o-", label=lab)
    a2.axhline(1, color="0.6")
    a2.set_xlabel("atoms in supercell")
    a2.set_ylabel("speed-up over torch (same run)")
    a2.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("small", "oam-l"), default="small")
    ap.add_argument("--sizes", type=int, nargs="*", default=[2, 3], help="LiF N×N×N supercells (2…9)")
    ap.add_argument("--lowsym", action="store_true", help="also the 8-atom triclinic cell (2×2×2 supercell)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--linearize", action="store_true", help="also time mode='linearize' (float64, all rows)")
    ap.add_argument("--max-torch-seconds", type=float, default=120.0,
                    help="estimate torch's force constants from one row when they would take longer")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop growing N after a size this slow")
    ap.add_argument("--out", type=Path_, default=None)
    args = ap.parse_args(argv)
    out = args.out or RESULTS / f"vs_torch_{args.arch}_{jax.default_backend()}.json"
    tm, m64, m32 = build_pair(args.arch)
    meta = metadata({"arch": args.arch, "model": m64.describe(), "torch_mode": "eager (torch.compile not used)",
                     "repeats": args.repeats})
    rows = []
    jobs = [("LiF", Crystal.from_ase(lif_primitive()), N) for N in args.sizes]
    if args.lowsym:
        jobs.append(("Li4F4-P1", Crystal.from_ase(low_symmetry_cell()), 2))
    for label, prim, N in jobs:
        t = time.perf_counter()
        r = bench_structure(label, prim, N, tm, m64, m32, args.repeats, not args.no_torch, args.max_torch_seconds,
                            args.linearize)
        r["bench_wall_s"] = time.perf_counter() - t
        rows.append(r)
        print({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
        write_json(out, meta, rows)  # after every size: a run cut short keeps what it measured
        if r["bench_wall_s"] > args.max_seconds:
            break
    plot(rows, out.with_suffix(".png"), f"{m64.describe()[:90]} — {meta['backend']}, load {meta['load_avg_start'][0]:.1f}")
    print(f"wrote {out} and .png")


def Path_(s):
    from pathlib import Path
    return Path(s)


if __name__ == "__main__":
    main()
