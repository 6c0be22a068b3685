"""Data-parallel finetuning: training throughput (structures/s) vs device count, same global batch, one process.

    python benchmarks/bench_data_parallel.py [--devices 1 2 4] [--frames 16] [--batch-size 4] [--epochs 3]

The CPU is split into ``max(--devices)`` simulated XLA devices (``--xla_force_host_platform_device_count``,
set before jax is imported; ``--platform gpu`` uses the real devices instead). For each device count n, a
:func:`phonjax.train.finetune` run with ``parallel.devices = n`` trains a random NequIP (the architecture of
benchmarks/bench_training.py) on the same rattled 3×3×3 LiF supercells (54 atoms, Lennard-Jones labels: the
labels do not matter for throughput) with the same global batch; throughput is taken from the metrics of
epochs ≥ 2 (after compilation; host batch building included, as a user sees it). Ratios to the 1-device run
are from the same process. Correctness alongside: the largest relative difference of the validation losses
of the n-device run from the 1-device run (summation order of the gradient reduction only).
Writes benchmarks/results/data_parallel_<platform>.json and .png.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args(argv)


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.platform == "cpu":  # before jax is imported (by _common)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={max(ARGS.devices)}").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"

import numpy as np  # noqa: E402

from _common import RESULTS, epoch_throughput, metadata, write_json  # noqa: E402
from bench_training import ARCH, make_data  # noqa: E402

import jax  # noqa: E402


def run(data: Path, work: Path, n: int, args) -> tuple[dict, list]:
    from phonjax.models.nequip.train_adapter import random_trainable
    from phonjax.train.config import (DataConfig, FinetuneConfig, LossConfig, OptimConfig, ParallelConfig,
                                      TrainingConfig)
    from phonjax.train.loop import finetune
    model = random_trainable(type_names=("Li", "F"), dtype=args.dtype, seed=1, **ARCH)
    cfg = FinetuneConfig(model="random", out_dir=str(work / f"dp{n}"),
                         data=DataConfig(train=str(data), batch_size=args.batch_size),
                         loss=LossConfig(energy_weight=1.0, forces_weight=10.0, stress_weight=1.0),
                         optim=OptimConfig(learning_rate=1e-3, ema_decay=0.99),
                         training=TrainingConfig(max_epochs=args.epochs, progress=False, checkpoint_every=10 ** 6,
                                                 patience=None, energy_reference="fit"),
                         parallel=ParallelConfig(devices=n))
    t0 = time.perf_counter()
    r = finetune(cfg, model=model, log=lambda s: None)
    wall = time.perf_counter() - t0
    rows = [h for h in r.history if h["epoch"] >= 2]
    secs, n_struct = epoch_throughput(r.history)
    first = next(h for h in r.history if h["epoch"] == 1)
    return ({"devices": n, "epochs_timed": len(rows), "structures_timed": round(n_struct), "seconds": secs,
             "structures_per_s": n_struct / secs, "first_epoch_s": first["train_time_s"], "wall_s_total": wall,
             "compilations": r.compilations["main"]},
            [h["valid_loss"] for h in r.history])


def plot(rows, path: Path, platform: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = [r["devices"] for r in rows]
    ax.plot(n, [r["structures_per_s"] for r in rows], "o-", label="measured")
    ax.plot(n, [rows[0]["structures_per_s"] * k / n[0] for k in n], "--", color="grey", label="ideal (linear)")
    for r in rows:
        ax.annotate(f"×{r['ratio_vs_1']:.2f}", (r["devices"], r["structures_per_s"]), textcoords="offset points",
                    xytext=(4, 6))
    ax.set_xlabel(f"{platform} devices (same global batch)")
    ax.set_ylabel("training throughput (structures/s)")
    ax.set_xticks(n)
    ax.set_title("phonjax data-parallel finetuning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args) -> None:
    platform = jax.default_backend()
    meta = metadata()  # load average at the start
    work = Path(tempfile.mkdtemp(prefix="bench_dp_"))
    data = make_data(work / "lif333.extxyz", args.frames)
    rows, curves = [], {}
    for n in sorted(args.devices):
        row, curves[n] = run(data, work, n, args)
        rows.append(row)
        print(row, flush=True)
    base = next(r for r in rows if r["devices"] == 1) if 1 in args.devices else rows[0]
    ref = curves[base["devices"]]
    for r in rows:
        r["ratio_vs_1"] = r["structures_per_s"] / base["structures_per_s"]
        c = np.asarray(curves[r["devices"]])
        r["valid_loss_max_rel_diff_vs_1"] = float(np.max(np.abs(c - ref) / np.abs(np.asarray(ref))))
    note = ("simulated XLA host devices sharing the same CPU cores: no speed-up is expected (the point is that "
            "the split is correct); the valid-loss differences are the summation order of the gradient "
            "reduction") if platform == "cpu" else "real devices"
    meta.update({"benchmark": "data-parallel finetuning throughput vs device count", "note": note,
                 "architecture": ARCH, "dtype": args.dtype, "batch_size": args.batch_size,
                 "n_frames": args.frames, "atoms_per_frame": 54, "epochs": args.epochs,
                 "timed": "epochs >= 2 (after compilation), host batch building included"})
    out = args.out or RESULTS / f"data_parallel_{platform}.json"
    write_json(out, meta, rows)
    plot(rows, out.with_suffix(".png"), platform)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main(ARGS))
