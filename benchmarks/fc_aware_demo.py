"""Does the force-constant-aware loss improve phonons at equal "DFT" cost? A controlled LiF experiment.

    .venv/bin/python benchmarks/fc_aware_demo.py [--n-rattled 3] [--epochs 20] [--fc-weight 10] [--out DIR]

Stand-ins (no foundation model or DFT needed): the *teacher* is a random NequIP (plays DFT); the starting
"foundation" model is the teacher with every weight perturbed by 15 % (a pretrained model with a systematic
error). Data are rattled 3×3×3 LiF supercells (54 atoms) labelled by the teacher. Two finetunes with the same
number of teacher ("DFT") evaluations of 54-atom supercells:

  A  E/F/σ loss on n_rattled + 3 rattled supercells;
  B  E/F/σ loss on n_rattled rattled supercells + FC loss on the home-cell force-constant rows of the perfect
     3×3×3 supercell (what 1 perfect + 2 displaced supercells give by finite displacements in rock salt).

Metric: phonon frequencies (THz; phonopy from each model's full supercell Hessian) along Γ–X–K–Γ–L against
the teacher's; force-constant row RMSE (eV/Å²). Writes OUT/fc_aware_demo.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCH = dict(r_max=4.0, l_max=1, num_layers=2, num_features=8, radial_mlp_width=16, avg_num_neighbors=20.0)
A_LAT = 4.06


def lif_unit():
    from ase.build import bulk
    return bulk("LiF", "rocksalt", a=A_LAT)


def rattled(n, seed):
    rng = np.random.default_rng(seed)
    base = lif_unit().repeat((3, 3, 3))
    out = []
    for _ in range(n):
        at = base.copy()
        eps = rng.normal(scale=0.01, size=(3, 3))
        at.set_cell(at.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        out.append(at)
    return out


def hessian_phonopy(model, tparams):
    """phonopy object with the model's full supercell Hessian as force constants (3×3×3 of LiF)."""
    import jax
    import jax.numpy as jnp
    import phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from phonjax.train.data import Frame, compute_capacities
    from phonjax.train.model_api import make_batch, total_energies
    u = lif_unit()
    ph = phonopy.Phonopy(PhonopyAtoms(symbols=u.get_chemical_symbols(), cell=u.cell.array,
                                      scaled_positions=u.get_scaled_positions()),
                         supercell_matrix=3 * np.eye(3, dtype=int), log_level=0)
    sc = ph.supercell
    f = Frame(np.asarray(sc.numbers), np.asarray(sc.positions), np.asarray(sc.cell), 0.0,
              np.zeros((len(sc.numbers), 3)), None)
    b = make_batch(model, [f], compute_capacities([model.frame_sizes(f)], 1))
    n = len(sc.numbers)

    def e(pos):
        return total_energies(model, tparams, b, b.positions.at[:n].set(pos), b.cells)[0]

    h = np.asarray(jax.jit(jax.hessian(e))(jnp.asarray(sc.positions))).reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    ph.force_constants = 0.5 * (h + h.transpose(1, 0, 3, 2))
    return ph


def path_q(n_per=12):
    G, X, K, L = [0, 0, 0], [0.5, 0, 0.5], [0.375, 0.375, 0.75], [0.5, 0.5, 0.5]
    qs = []
    for a, b in ((G, X), (X, K), (K, G), (G, L)):
        for t in np.linspace(0, 1, n_per, endpoint=False):
            qs.append((1 - t) * np.array(a) + t * np.array(b))
    qs.append(np.array(L, float))
    return np.array(qs)


def frequencies(ph, qs):
    return np.array([ph.get_frequencies(q) for q in qs])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rattled", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--perturb", type=float, default=0.15)
    ap.add_argument("--fc-weight", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0, help="varies teacher, perturbation and data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import phonjax  # noqa: F401
    from ase.calculators.singlepoint import SinglePointCalculator
    import ase.io
    from phonjax.models.nequip.model import Model
    from phonjax.train.config import (DataConfig, FcLossConfig, FinetuneConfig, LossConfig, OptimConfig,
                                      TrainingConfig)
    from phonjax.train.data import frames_from_atoms, compute_capacities
    from phonjax.train.loop import finetune
    from phonjax.train.model_api import make_batch, predict
    from phonjax.models.nequip.train_adapter import NequipTrainable, random_trainable

    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fc_demo_"))
    teacher = random_trainable(("Li", "F"), seed=11 + args.seed, **ARCH)
    tt = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    rng = np.random.default_rng(args.seed)
    pert = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x) * (1 + args.perturb * rng.normal(size=np.shape(x)))),
                                  teacher.model.params)
    start = NequipTrainable(Model(teacher.config, pert, {}))

    # labelled data: rattled supercells, "DFT" = teacher
    imgs = rattled(args.n_rattled + 3 + 4, seed=1 + args.seed)  # the last 4 are the validation set for both runs
    pred_fn = jax.jit(lambda p, b: predict(teacher, p, b))
    dummy = []
    for at in imgs:
        a = at.copy()
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)))
        dummy.append(a)
    frames = frames_from_atoms(dummy).frames
    caps = compute_capacities([teacher.frame_sizes(f) for f in frames], 1)
    for at, f in zip(imgs, frames):
        pr = pred_fn(tt, make_batch(teacher, [f], caps))
        s = np.asarray(pr.stress[0])
        at.calc = SinglePointCalculator(at, energy=float(pr.energy[0]), forces=np.asarray(pr.forces[:len(at)]),
                                        stress=s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    valid = work / "valid.extxyz"
    ase.io.write(valid, imgs[-4:], format="extxyz")
    ase.io.write(work / "A.extxyz", imgs[:args.n_rattled + 3], format="extxyz")
    ase.io.write(work / "B.extxyz", imgs[:args.n_rattled], format="extxyz")

    # reference force constants ("finite displacements" of the teacher) as a phonopy yaml
    ph_t = hessian_phonopy(teacher, tt)
    ph_t.save(str(work / "teacher_fc.yaml"), settings={"force_constants": True})
    qs = path_q()
    f_teacher = frequencies(ph_t, qs)

    results = {"settings": vars(args) | {"out": str(args.out)}, "architecture": ARCH, "runs": {}}

    def evaluate(name, tparams):
        ph = hessian_phonopy(start, tparams)
        fr = frequencies(ph, qs)
        fc_rmse = float(np.sqrt(np.mean((ph.force_constants[[0, 27]] - ph_t.force_constants[[0, 27]]) ** 2)))
        d = fr - f_teacher
        results["runs"][name] = {"freq_rmse_thz": float(np.sqrt(np.mean(d ** 2))), "freq_max_abs_thz": float(np.abs(d).max()),
                                 "fc_rows_rmse_ev_a2": fc_rmse, "gamma_thz": fr[0].tolist()}
        print(name, results["runs"][name], flush=True)

    evaluate("start", {"model": start.initial_params(), "offsets": jnp.zeros(2)})
    n_a, n_b = args.n_rattled + 3, args.n_rattled
    ep_b = int(round(args.epochs * n_a / n_b))  # same number of optimiser steps (batch size 1) in both runs
    for name, train, fc, epochs in (("A_EF_only", work / "A.extxyz", None, args.epochs),
                                    ("B_EF_plus_FC", work / "B.extxyz", work / "teacher_fc.yaml", ep_b)):
        cfg = FinetuneConfig(
            model="start", out_dir=str(work / name),
            data=DataConfig(train=str(train), valid=str(valid), batch_size=1),
            loss=LossConfig(energy_weight=1.0, forces_weight=10.0, stress_weight=1.0,
                            fc=FcLossConfig(reference=str(fc) if fc else None, weight=args.fc_weight if fc else 0.0)),
            optim=OptimConfig(learning_rate=2e-3, warmup_steps=2, ema_decay=None),
            training=TrainingConfig(max_epochs=epochs, progress=False, patience=None, checkpoint_every=10 ** 6,
                                    energy_reference="none", eval_every=epochs))
        t0 = time.perf_counter()
        r = finetune(cfg, model=start, log=lambda s: None)
        evaluate(name, r.params)
        results["runs"][name].update(train_s=time.perf_counter() - t0, steps=r.stages[0].steps,
                                     valid_f_mae=r.history[-1]["valid_f_mae"],
                                     valid_e_mae=r.history[-1]["valid_e_mae"])
    results["teacher_gamma_thz"] = f_teacher[0].tolist()
    results["total_s"] = time.perf_counter() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    name = "fc_aware_demo.json" if args.seed == 0 else f"fc_aware_demo_seed{args.seed}.json"
    (args.out / name).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
