"""Training throughput: phonjax finetuning step vs torch ``nequip-train`` (same architecture, data, batch size).

    .venv/bin/python benchmarks/bench_training.py [--frames 24] [--batch-size 4] [--epochs 3] [--out DIR]

Data: rattled 3×3×3 LiF supercells (54 atoms) written to extxyz with energy/forces/stress labels from an
ASE Lennard-Jones calculator (labels do not matter for throughput), or ``--data FILE``.
Architecture (both sides): NequIP, l_max 1, parity on, 3 layers, 32 features, radial MLP 1×64, 8 Bessels,
r_max 4.5 Å, float32 by default (``--dtype``); loss E/atom + F + stress MSE; Adam; EMA.
torch: ``nequip-train`` (hydra config written here) with a Lightning callback timing every training step.
phonjax: :func:`phonjax.train.finetune` from a random model of the same architecture (timings from the
metrics' ``train_time_s`` of epochs ≥ 2, i.e. after compilation).
Writes ``OUT/bench_training.json`` with structures/s and atoms/s per side and the ratio phonjax/torch.
torch is imported only in the nequip-train subprocess.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the repository's phonjax (enables float64) even when run from elsewhere

ARCH = dict(l_max=1, parity=True, num_layers=3, num_features=32, radial_mlp_depth=1, radial_mlp_width=64,
            num_bessels=8, r_max=4.5, polynomial_cutoff_p=6)

TIMER = '''
import json, time
import lightning


class StepTimer(lightning.Callback):
    """Wall time of every training batch (forward, backward, optimiser step)."""

    def __init__(self, out_file: str):
        self.out_file, self.t, self.times, self.sizes = out_file, None, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.t)
        self.sizes.append([int(batch["num_atoms"].shape[0]), int(batch["num_atoms"].sum())])

    def on_train_end(self, trainer, module):
        with open(self.out_file, "w") as fh:
            json.dump({"times": self.times, "sizes": self.sizes}, fh)
'''


def make_data(path: Path, n_frames: int, seed: int = 0) -> Path:
    import ase.io
    from ase.build import bulk
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator
    rng = np.random.default_rng(seed)
    base = bulk("LiF", "rocksalt", a=4.03).repeat((3, 3, 3))
    images = []
    for _ in range(n_frames):
        at = base.copy()
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        at.calc = LennardJones(sigma=1.8, epsilon=0.05, rc=4.5)
        e, f, s = at.get_potential_energy(), at.get_forces(), at.get_stress()
        at.calc = SinglePointCalculator(at, energy=e, forces=f, stress=s)
        images.append(at)
    ase.io.write(path, images, format="extxyz")
    return path


def nequip_config(data: Path, workdir: Path, batch: int, epochs: int, dtype: str, timer_file: Path) -> str:
    a = ARCH
    return f"""
run: [train]
seed: 1
cutoff_radius: {a['r_max']}
model_type_names: [Li, F]
chemical_species: ${{model_type_names}}
dataloader:
  _target_: torch.utils.data.DataLoader
  batch_size: {batch}
  shuffle: true
data:
  _target_: nequip.data.datamodule.NequIPDataModule
  seed: ${{seed}}
  split_dataset:
    dataset:
      _target_: nequip.data.dataset.ASEDataset
      file_path: {data}
      transforms:
        - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
          model_type_names: ${{model_type_names}}
          chemical_species_to_atom_type_map: ${{list_to_identity_dict:${{chemical_species}}}}
        - _target_: nequip.data.transforms.NeighborListTransform
          r_max: ${{cutoff_radius}}
    train: 0.8
    val: 0.2
  train_dataloader: ${{dataloader}}
  val_dataloader: ${{dataloader}}
  stats_manager:
    _target_: nequip.data.CommonDataStatisticsManager
    type_names: ${{model_type_names}}
trainer:
  _target_: lightning.Trainer
  max_epochs: {epochs}
  check_val_every_n_epoch: 1
  log_every_n_steps: 1000
  enable_progress_bar: false
  logger: false
  enable_checkpointing: false
  callbacks:
    - _target_: bench_training_timer.StepTimer
      out_file: {timer_file}
training_module:
  _target_: nequip.train.EMALightningModule
  loss:
    _target_: nequip.train.EnergyForceStressLoss
    per_atom_energy: true
    coeffs: {{total_energy: 1.0, forces: 10.0, stress: 1.0}}
  val_metrics:
    _target_: nequip.train.EnergyForceStressMetrics
    coeffs: {{total_energy_mae: 1.0, forces_mae: 1.0, stress_mae: 1.0}}
  optimizer:
    _target_: torch.optim.Adam
    lr: 0.001
  model:
    _target_: nequip.model.NequIPGNNModel
    seed: ${{seed}}
    model_dtype: {dtype}
    type_names: ${{model_type_names}}
    r_max: ${{cutoff_radius}}
    l_max: {a['l_max']}
    parity: {str(a['parity']).lower()}
    num_layers: {a['num_layers']}
    num_features: {a['num_features']}
    radial_mlp_depth: {a['radial_mlp_depth']}
    radial_mlp_width: {a['radial_mlp_width']}
    num_bessels: {a['num_bessels']}
    polynomial_cutoff_p: {a['polynomial_cutoff_p']}
    avg_num_neighbors: ${{training_data_stats:num_neighbors_mean}}
    per_type_energy_shifts: ${{training_data_stats:per_atom_energy_mean}}
    per_type_energy_scales: ${{training_data_stats:forces_rms}}
"""


def run_torch(data: Path, work: Path, batch: int, epochs: int, dtype: str, threads: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_training_timer.py").write_text(TIMER)
    timer_file = work / "torch_steps.json"
    (work / "bench.yaml").write_text(nequip_config(data, work, batch, epochs, dtype, timer_file))
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS=str(threads))
    exe = Path(sys.executable).with_name("nequip-train")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "-cp", str(work), "-cn", "bench", f"hydra.run.dir={work / 'run'}"],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"nequip-train failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(timer_file.read_text())
    n_first = -(-int(0.8 * count_frames(data)) // batch)  # first epoch's batches (warm-up) excluded
    t = np.array(rec["times"][n_first:])
    sizes = np.array(rec["sizes"][n_first:])
    return {"steps_timed": len(t), "seconds": float(t.sum()), "wall_s_total": wall,
            "structures_per_s": float(sizes[:, 0].sum() / t.sum()), "atoms_per_s": float(sizes[:, 1].sum() / t.sum()),
            "s_per_step_median": float(np.median(t))}


def count_frames(path: Path) -> int:
    import ase.io
    return len(ase.io.read(path, index=":"))


def run_phonjax(data: Path, work: Path, batch: int, epochs: int, dtype: str) -> dict:
    import phonjax  # noqa: F401
    from phonjax.train.config import DataConfig, FinetuneConfig, LossConfig, OptimConfig, TrainingConfig
    from phonjax.train.loop import finetune
    from _common import epoch_throughput
    from phonjax.models.nequip.train_adapter import random_trainable
    model = random_trainable(type_names=("Li", "F"), dtype=dtype, seed=1, **ARCH)
    cfg = FinetuneConfig(model="random", out_dir=str(work / "phonjax"),
                         data=DataConfig(train=str(data), batch_size=batch),
                         loss=LossConfig(energy_weight=1.0, forces_weight=10.0, stress_weight=1.0),
                         optim=OptimConfig(learning_rate=1e-3, ema_decay=0.99),
                         training=TrainingConfig(max_epochs=epochs, progress=False, checkpoint_every=10 ** 6,
                                                 patience=None, energy_reference="fit"))
    t0 = time.perf_counter()
    r = finetune(cfg, model=model, log=lambda s: None)
    wall = time.perf_counter() - t0
    rows = [h for h in r.history if h["epoch"] >= 2]
    secs, n_struct = epoch_throughput(r.history)
    n_atoms_per = count_atoms(data)
    return {"epochs_timed": len(rows), "seconds": secs, "wall_s_total": wall,
            "structures_per_s": n_struct / secs, "atoms_per_s": n_struct / secs * n_atoms_per,
            "compilations": r.compilations}


def count_atoms(path: Path) -> float:
    import ase.io
    return float(np.mean([len(a) for a in ase.io.read(path, index=":")]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_training_"))
    data = args.data or make_data(work / "lif333.extxyz", args.frames)
    res = {"architecture": ARCH, "batch_size": args.batch_size, "epochs": args.epochs, "dtype": args.dtype,
           "data": str(data), "n_frames": count_frames(data), "atoms_per_frame": count_atoms(data),
           "machine": {"cpus": os.cpu_count()}}
    res["phonjax"] = run_phonjax(data, work, args.batch_size, args.epochs, args.dtype)
    print("phonjax:", res["phonjax"], flush=True)
    if not args.skip_torch:
        res["torch_nequip_train"] = run_torch(data, work / "torch", args.batch_size, args.epochs, args.dtype,
                                              args.threads)
        print("torch nequip-train:", res["torch_nequip_train"], flush=True)
        res["ratio_phonjax_over_torch_structures_per_s"] = (res["phonjax"]["structures_per_s"]
                                                            / res["torch_nequip_train"]["structures_per_s"])
        print(f"ratio phonjax/torch (structures/s): {res['ratio_phonjax_over_torch_structures_per_s']:.2f}")
    (args.out / "bench_training.json").write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
