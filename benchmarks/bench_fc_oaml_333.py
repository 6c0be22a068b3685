"""Issue 11's target case: home-cell force constants of LiF 3×3×3 (54 atoms) with an OAM-L-sized NequIP
(random perturbed weights, 9.6M parameters), phonjax (site-symmetry reduced HVPs, lax.map chunks of 1 to bound
memory; float64 and float32 network) vs torch nequip's six double-backward rows on the same weights, one run.

    .venv/bin/python benchmarks/bench_fc_oaml_333.py   → benchmarks/results/fc_oaml_333_cpu.json
"""
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import phonjax  # noqa: E402
from _common import TorchSystem, build_pair, lif_primitive, max_rss_mib, metadata, write_json  # noqa: E402
from phonjax.structure import Crystal, make_supercell  # noqa: E402


def main():
    tm, m64, m32 = build_pair("oam-l")
    prim = Crystal.from_ase(lif_primitive())
    sc = make_supercell(prim, 3)
    row = {"structure": "LiF", "N": 3, "n_atoms": sc.crystal.n_atoms}
    for tag, m in (("f32", m32), ("f64", m64)):
        t = time.perf_counter()
        phonjax.force_constants(m, prim, sc, chunk_size=1, allow_small_supercell=True)
        row[f"jax_{tag}_first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        fc = phonjax.force_constants(m, prim, sc, chunk_size=1, allow_small_supercell=True)
        row[f"jax_{tag}_fc_s"] = time.perf_counter() - t
        row["jax_n_hvp"] = fc.report.n_hvp
    ts = TorchSystem(tm, sc.crystal.to_ase())
    for _ in range(2):
        ts.energy_forces()
    t = time.perf_counter()
    ts.energy_forces()
    row["torch_ef_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ts.rows([(i, a) for i in range(prim.n_atoms) for a in range(3)])
    row["torch_fc_rows_s"] = time.perf_counter() - t
    row["speedup_f64"] = row["torch_fc_rows_s"] / row["jax_f64_fc_s"]
    row["speedup_f32"] = row["torch_fc_rows_s"] / row["jax_f32_fc_s"]
    row["max_rss_MiB"] = max_rss_mib()
    print(row)
    write_json(HERE / "results" / "fc_oaml_333_cpu.json", metadata({"arch": "oam-l", "chunk_size": 1}), [row])


if __name__ == "__main__":
    main()
