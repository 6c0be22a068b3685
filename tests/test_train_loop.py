"""Training loop on a tiny analytic teacher/student pair potential (tests/train_helpers.PairModel).

Covers: one step lowers the loss; overfitting a tiny dataset; resume == uninterrupted (bitwise, float64,
CPU); one compilation of train/eval steps across steps, epochs and differently-sized structures;
step-wise stages; freezing; metrics files; forces/stress = finite differences of the energy.
Runtime ≈ 40 s on 2 cores.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel, label_with, rattled_lif, write_extxyz  # noqa: E402

from phonjax.train.config import (DataConfig, FinetuneConfig, FreezeConfig, OptimConfig,  # noqa: E402
                                  StageConfig, TrainingConfig)
from phonjax.train.data import compute_capacities, read_extxyz  # noqa: E402
from phonjax.train.loop import build_steps, finetune, init_state  # noqa: E402
from phonjax.train.loss import loss_terms  # noqa: E402
from phonjax.train.model_api import make_batch, predict  # noqa: E402
from phonjax.train.optim import make_optimizer, make_schedule, trainable_mask  # noqa: E402
from phonjax.train.config import LossConfig  # noqa: E402


@pytest.fixture(scope="module")
def teacher_data(tmp_path_factory):
    """6 small + 4 larger rattled LiF cells labelled by a teacher pair potential (with stress)."""
    d = tmp_path_factory.mktemp("data")
    teacher = PairModel(seed=1, scale=1.3)
    tp = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    imgs = rattled_lif(6, seed=0, reps=(1, 1, 1)) + rattled_lif(4, seed=1, reps=(2, 1, 1))
    imgs = label_with(teacher, tp, imgs)
    return write_extxyz(d / "data.extxyz", imgs, info={"E0_Li": -1.5, "E0_F": -2.5})


def _cfg(data, out, **kw):
    t = dict(max_epochs=4, progress=False, checkpoint_every=1, patience=None, energy_reference="isolated_atoms")
    t.update(kw.pop("training", {}))
    o = dict(learning_rate=0.02, warmup_steps=2, ema_decay=0.9)
    o.update(kw.pop("optim", {}))
    return FinetuneConfig(model="toy", out_dir=str(out), data=DataConfig(train=str(data), batch_size=3),
                          optim=OptimConfig(**o), training=TrainingConfig(**t), **kw)


def _quiet(msg):
    pass


def test_forces_stress_are_energy_derivatives(teacher_data):
    """predict(): F = −∂E/∂r and σ = (1/V) ∂E/∂ε checked by central finite differences."""
    m = PairModel(seed=0)
    tp = {"model": m.initial_params(), "offsets": jnp.asarray([0.1, -0.2])}
    f = read_extxyz(teacher_data).frames[7]
    caps = compute_capacities([m.frame_sizes(f)], 2)
    b = make_batch(m, [f], caps)
    pr = predict(m, tp, b)
    h = 1e-4

    def energy(pos, cell):
        from phonjax.train.data import Frame
        ff = Frame(f.numbers, pos, cell, 0.0, f.forces, None)
        bb = make_batch(m, [ff], caps)
        return float(predict(m, tp, bb, with_stress=False).energy[0])

    for (i, a) in [(0, 0), (5, 2), (11, 1)]:
        dp = np.zeros_like(f.positions)
        dp[i, a] = h
        fd = -(energy(f.positions + dp, f.cell) - energy(f.positions - dp, f.cell)) / (2 * h)
        assert abs(fd - float(pr.forces[i, a])) < 1e-7
    vol = abs(np.linalg.det(f.cell))
    for (a, c) in [(0, 0), (0, 1), (2, 1)]:
        eps = np.zeros((3, 3))
        eps[a, c] = eps[c, a] = h / 2 if a != c else h
        ep = energy(f.positions @ (np.eye(3) + eps), f.cell @ (np.eye(3) + eps))
        em = energy(f.positions @ (np.eye(3) - eps), f.cell @ (np.eye(3) - eps))
        fd = (ep - em) / (2 * h) / vol
        assert abs(fd - float(pr.stress[0, a, c])) < 1e-8


def test_one_step_lowers_loss(teacher_data):
    m = PairModel(seed=0)
    ds = read_extxyz(teacher_data)
    caps = compute_capacities([m.frame_sizes(f) for f in ds.frames], 4)
    batch = make_batch(m, ds.frames[3:7], caps)
    tp = {"model": m.initial_params(), "offsets": jnp.zeros(2)}
    oc = OptimConfig(learning_rate=1e-3, ema_decay=None)
    opt = make_optimizer(oc, make_schedule(oc, 10), trainable_mask(tp, FreezeConfig()))
    step, ev = build_steps(m, LossConfig(), opt, None, True)
    state = init_state(opt, tp, 0)
    before = float(ev(tp, batch)[0]["total"])
    state, terms = step(state, batch, 1.0)
    assert float(terms["total"]) == pytest.approx(before, rel=1e-12)  # loss at the old params
    after = float(ev(state["params"], batch)[0]["total"])
    assert after < before
    # and the loss terms agree with a direct evaluation
    pred = predict(m, state["params"], batch)
    assert float(loss_terms(pred, batch.labels, LossConfig())["total"]) == pytest.approx(after, rel=1e-12)


def test_overfit_tiny_dataset(tmp_path, teacher_data):
    """4 structures, student of the teacher's functional form: loss falls by > 10³ (to ~1e-5)."""
    imgs = read_extxyz(teacher_data)
    small = tmp_path / "small.extxyz"
    import ase.io
    ase.io.write(small, ase.io.read(teacher_data, index=":4"), format="extxyz")
    cfg = FinetuneConfig(model="toy", out_dir=str(tmp_path / "out"),
                         data=DataConfig(train=str(small), valid=str(small), batch_size=4),
                         optim=OptimConfig(learning_rate=0.05, ema_decay=None, schedule="constant"),
                         training=TrainingConfig(max_epochs=300, progress=False, energy_reference="fit",
                                                 eval_every=100, checkpoint_every=1000, patience=None))
    r = finetune(cfg, model=PairModel(seed=0), log=_quiet)
    assert len(imgs) == 10
    first, last = r.history[0], r.history[-1]
    assert last["valid_loss"] < 2e-5 and last["valid_loss"] < 1e-3 * first["valid_loss"]
    assert last["valid_f_mae"] < 2e-3 and last["valid_e_mae"] < 1e-3
    assert r.compilations["main"] == {"train_step": 1, "eval_step": 1}


def test_resume_is_bitwise(tmp_path, teacher_data):
    """Interrupt after 5 steps (mid-epoch 2), resume → identical params/EMA/opt-state to an uninterrupted run."""
    full = finetune(_cfg(teacher_data, tmp_path / "a"), model=PairModel(seed=0), log=_quiet)
    part = finetune(_cfg(teacher_data, tmp_path / "b"), model=PairModel(seed=0), log=_quiet, max_steps=5)
    assert part.interrupted
    res = finetune(_cfg(teacher_data, tmp_path / "b"), model=PairModel(seed=0), log=_quiet, resume=True)
    la, lb = jax.tree_util.tree_leaves(full.last_state), jax.tree_util.tree_leaves(res.last_state)
    assert len(la) == len(lb)
    for a, b in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["valid_loss"] for h in full.history] == [h["valid_loss"] for h in res.history]
    # no compilation beyond the first for train/eval steps (data sizes differ: 8- and 16-atom cells)
    assert full.compilations["main"] == {"train_step": 1, "eval_step": 1}
    # outputs
    out = tmp_path / "a"
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4] and {"valid_e_mae", "valid_f_mae", "valid_f_rmse", "valid_s_mae"} <= set(rows[0])
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("stage,epoch,step")
    assert (out / "model" / "params.npz").is_file() and (out / "learning_curve.png").is_file()
    # resuming a finished run changes nothing; a fresh run into a used out_dir is refused
    again = finetune(_cfg(teacher_data, tmp_path / "a"), model=PairModel(seed=0), log=_quiet, resume=True)
    for a, b in zip(la, jax.tree_util.tree_leaves(again.last_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    from phonjax.train.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        finetune(_cfg(teacher_data, tmp_path / "a"), model=PairModel(seed=0), log=_quiet)


def test_stages_and_freezing(tmp_path, teacher_data):
    """Two stages (second starts from the first's best EMA weights); scale/shift-only training leaves
    every other parameter bit-identical."""
    cfg = _cfg(teacher_data, tmp_path / "s", training={"max_epochs": 2},
               freeze=FreezeConfig(train="scale_shift", train_energy_offsets=False),
               stages=(StageConfig(name="first", train=str(teacher_data)),
                       StageConfig(name="second", train=str(teacher_data), learning_rate=0.01,
                                   freeze=FreezeConfig(train="all"))))
    m = PairModel(seed=0)
    p0 = m.initial_params()
    part = finetune(cfg, model=m, log=_quiet, max_steps=8)  # stops inside stage "second"
    assert part.interrupted
    r = finetune(cfg, model=m, log=_quiet, resume=True)
    assert [s.name for s in r.stages] == ["first", "second"]
    assert [h["stage"] for h in r.history] == ["first"] * 3 + ["second"] * 3
    # stage 1 froze the pair parameters; its best checkpoint proves it
    from phonjax.train.checkpoint import Checkpointer
    tp0 = {"model": p0, "offsets": jnp.zeros(2)}
    oc = cfg.optim
    opt1 = make_optimizer(oc, make_schedule(oc, 8), trainable_mask(tp0, cfg.freeze))
    st = Checkpointer(tmp_path / "s" / "stages" / "first" / "best").restore(init_state(opt1, tp0, 0))[0]
    np.testing.assert_array_equal(np.asarray(st["params"]["model"]["pair"]["logA"]), np.asarray(p0["pair"]["logA"]))
    assert not np.array_equal(np.asarray(st["params"]["model"]["per_type_energy_scale_shift"]["shifts"]),
                              np.asarray(p0["per_type_energy_scale_shift"]["shifts"]))
    # stage 2 trained everything
    assert not np.array_equal(np.asarray(r.params["model"]["pair"]["logA"]), np.asarray(p0["pair"]["logA"]))


def test_plateau_schedule_runs(tmp_path, teacher_data):
    cfg = _cfg(teacher_data, tmp_path / "p", optim={"schedule": "plateau", "plateau_patience": 0,
                                                     "learning_rate": 0.5}, training={"max_epochs": 3})
    r = finetune(cfg, model=PairModel(seed=0), log=_quiet)
    assert len(r.history) == 4 and r.compilations["main"]["train_step"] == 1


def test_early_stopping(tmp_path, teacher_data):
    """min_delta larger than any change: the start (epoch 0) stays best; patience 1 → stop after epoch 2."""
    cfg = _cfg(teacher_data, tmp_path / "e", optim={"learning_rate": 1e-12},
               training={"max_epochs": 10, "patience": 1, "min_delta": 1.0})
    r = finetune(cfg, model=PairModel(seed=0), log=_quiet)
    assert r.stages[0].stopped_early and r.stages[0].epochs == 2 and r.stages[0].best_epoch == 0
    start = PairModel(seed=0).initial_params()  # best = the start (EMA of the start is the start)
    np.testing.assert_array_equal(np.asarray(r.params["model"]["pair"]["logA"]), np.asarray(start["pair"]["logA"]))


def test_huber_and_masks():
    """Huber ×2 equals the MSE below δ and grows linearly above; padded graphs/nodes never count."""
    from phonjax.train.loss import Labels, Predictions, error_sums, finalize_errors
    lab = Labels(energy=jnp.array([1.0, 2.0, 0.0]), forces=jnp.zeros((4, 3)), stress=jnp.zeros((3, 3, 3)),
                 n_atoms=jnp.array([2.0, 1.0, 0.0]), graph_mask=jnp.array([True, True, False]),
                 node_mask=jnp.array([True, True, True, False]), stress_mask=jnp.array([True, False, False]))
    f = jnp.zeros((4, 3)).at[0, 0].set(0.005).at[3].set(100.0)  # padded node with a huge "error"
    pred = Predictions(energy=jnp.array([1.0 + 2 * 0.004, 2.0, 50.0]), forces=f, stress=jnp.zeros((3, 3, 3)))
    mse = loss_terms(pred, lab, LossConfig(kind="mse"))
    hub = loss_terms(pred, lab, LossConfig(kind="huber", huber_delta=0.01))
    assert float(mse["energy"]) == pytest.approx(0.004 ** 2 / 2) and float(hub["energy"]) == pytest.approx(float(mse["energy"]))
    assert float(mse["forces"]) == pytest.approx(0.005 ** 2 / 9)
    big = Predictions(energy=jnp.array([1.0 + 2 * 1.0, 2.0, 0.0]), forces=jnp.zeros((4, 3)), stress=jnp.zeros((3, 3, 3)))
    assert float(loss_terms(big, lab, LossConfig(kind="huber", huber_delta=0.01))["energy"]) == pytest.approx(
        2 * 0.01 * (1.0 - 0.005) / 2)
    m = finalize_errors(error_sums(pred, lab))
    assert m["e_mae"] == pytest.approx(0.002) and m["f_mae"] == pytest.approx(0.005 / 9)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, teacher_data):
    from phonjax.train.checkpoint import CheckpointError
    cfg = _cfg(teacher_data, tmp_path / "c", training={"max_epochs": 2})
    finetune(cfg, model=PairModel(seed=0), log=_quiet, max_steps=5)  # interrupted in epoch 2
    ck = tmp_path / "c" / "stages" / "main" / "checkpoints"
    (step_dir,) = [p for p in ck.iterdir() if p.name.isdigit()]
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot restore checkpoint"):
        finetune(cfg, model=PairModel(seed=0), log=_quiet, resume=True)


def test_no_compilation_after_the_first_epoch(tmp_path, teacher_data):
    """XLA compilations counted with phonjax.testing (JAX monitoring events): 4 epochs compile no more than 2."""
    counting = pytest.importorskip("phonjax.testing")
    with counting.count_compilations() as c2:
        finetune(_cfg(teacher_data, tmp_path / "two", training={"max_epochs": 2}), model=PairModel(seed=0), log=_quiet)
    with counting.count_compilations() as c4:
        finetune(_cfg(teacher_data, tmp_path / "four", training={"max_epochs": 4}), model=PairModel(seed=0), log=_quiet)
    assert c4.count >= 2 and c4.count <= c2.count, (c2.count, c4.count)  # ≥ train + eval steps
