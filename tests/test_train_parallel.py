"""Data-parallel finetuning (phonjax.train.parallel) on 4 simulated CPU devices equals the single-device run.

Runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_PLATFORMS=cpu``
(the flag must be set before jax is imported), on the tiny analytic teacher/student pair potential of
tests/train_helpers.py (6 eight-atom + 4 sixteen-atom LiF cells, float64):

* the same global batches (3 structures: split 2+1 on 2 devices, 1+1+1 plus a zero-weight padding chunk on 4;
  a last batch of 1 structure leaves 3 of 4 devices zero-weight) trained for 8 optimiser steps on meshes of
  1, 2 and 4 devices: every step's loss terms, the evaluation error sums and the final parameters agree to a
  relative 1e-10. They are not bitwise equal because the gradient and the loss are sums over devices of
  per-device sums (``psum``), a different floating-point summation order than one device's single sum
  (≈1e-16 relative per step); Adam's normalised updates carry it along for a few steps, far below 1e-10.
* with a force-constant loss term (random directions from the replicated RNG key): 4 steps on 1 and 4 devices
  agree to the same tolerance;
* an end-to-end ``finetune`` on 4 devices equals the 1-device one (history, final state) to the same tolerance;
* a 4-device run interrupted after 5 steps and resumed from its orbax checkpoint ends bit-for-bit equal to the
  uninterrupted 4-device run (replicated state saved, restored onto the mesh; the same reduction order);
* asking for more devices than JAX sees is one ConfigError line, before anything is written.

Runtime ≈ 40–70 s on 2 shared cores (one compilation of the train and eval steps per mesh).
"""
from pathlib import Path
import textwrap

from forced_devices import run_with_devices

SCRIPT = textwrap.dedent(r"""
    import sys, tempfile
    from pathlib import Path
    import numpy as np
    import phonjax  # noqa: F401  (x64)
    import jax, jax.numpy as jnp
    sys.path.insert(0, "tests")
    from train_helpers import PairModel, label_with, rattled_lif, write_extxyz
    from phonjax.train.config import (DataConfig, FinetuneConfig, FreezeConfig, LossConfig, OptimConfig,
                                      ParallelConfig, TrainingConfig)
    from phonjax.train.data import compute_capacities, read_extxyz
    from phonjax.train.loop import finetune
    from phonjax.train.optim import make_optimizer, make_schedule, trainable_mask
    from phonjax.train.parallel import data_parallel
    from phonjax.train.steps import build_steps, init_state

    assert jax.device_count() == 4, jax.devices()
    RTOL = 1e-10
    tmp = Path(tempfile.mkdtemp())
    teacher = PairModel(seed=1, scale=1.3)
    imgs = label_with(teacher, {"model": teacher.initial_params(), "offsets": jnp.zeros(2)},
                      rattled_lif(6, seed=0, reps=(1, 1, 1)) + rattled_lif(4, seed=1, reps=(2, 1, 1)))
    data = write_extxyz(tmp / "data.extxyz", imgs, info={"E0_Li": -1.5, "E0_F": -2.5})
    frames = read_extxyz(data).frames

    def close(a, b, what):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300), initial=0.0)
        assert np.allclose(a, b, rtol=RTOL, atol=0.0), (what, err)
        return err

    # ---- 8 steps of the same global batches on 1, 2 and 4 devices -------------------------------------
    m = PairModel(seed=0)
    tp = {"model": m.initial_params(), "offsets": jnp.asarray([0.05, -0.1])}
    oc = OptimConfig(learning_rate=0.02, warmup_steps=2, ema_decay=0.9)
    opt = make_optimizer(oc, make_schedule(oc, 8), trainable_mask(tp, FreezeConfig()))
    rng = np.random.default_rng(3)
    batches = [list(rng.choice(len(frames), 3, replace=False)) for _ in range(7)] + [[9]]
    runs = {}
    for n in (1, 2, 4):
        dp = data_parallel(ParallelConfig(devices=n))
        caps = compute_capacities([m.frame_sizes(f) for f in frames], dp.per_device(3))
        step, ev = build_steps(m, LossConfig(), opt, 0.9, True, None, dp)
        state = dp.replicate(init_state(opt, tp, 0))
        losses = []
        for bidx in batches:
            b = dp.batch(m, [frames[i] for i in bidx], caps)
            assert len(b.positions.sharding.device_set) == n
            state, terms = step(state, b, 1.0)
            losses.append([float(terms[k]) for k in ("total", "energy", "forces", "stress")])
        assert len(state["params"]["offsets"].sharding.device_set) == n  # replicated on the mesh
        full = dp.batch(m, frames[:3], caps)
        terms, sums = ev(state["params"], full)
        runs[n] = (np.array(losses), state, {**{k: float(v) for k, v in terms.items()},
                                             **{k: float(v) for k, v in sums.items()}})
        assert step._cache_size() == 1 and ev._cache_size() == 1
    base = runs[1]
    assert base[0][-1, 0] < base[0][0, 0]  # it trains
    worst = 0.0
    for n in (2, 4):
        worst = max(worst, close(runs[n][0], base[0], f"losses {n}"))
        for a, b in zip(jax.tree_util.tree_leaves(runs[n][1]), jax.tree_util.tree_leaves(base[1])):
            worst = max(worst, close(a, b, f"state {n}"))
        for k in base[2]:
            worst = max(worst, close(runs[n][2][k], base[2][k], f"eval {k} {n}"))

    # ---- with the force-constant term (one structure, evaluated on the replicated parameters) -----------
    from phonjax.train.model_api import make_batch
    from phonjax.train.steps import FcTerm
    f0 = frames[0]
    fcb = make_batch(m, [f0], compute_capacities([m.frame_sizes(f0)], 1), False)
    fc_ref = np.random.default_rng(5).normal(0, 1.0, (2, f0.n_atoms, 3, 3))
    fct = FcTerm(fcb, jnp.asarray([0, 1]), jnp.asarray(fc_ref), f0.n_atoms, 0.5, 2)  # 2 random directions/step
    fc_runs = {}
    for n in (1, 4):
        dp = data_parallel(ParallelConfig(devices=n))
        caps = compute_capacities([m.frame_sizes(f) for f in frames], dp.per_device(3))
        step, _ = build_steps(m, LossConfig(), opt, 0.9, True, fct, dp)
        state = dp.replicate(init_state(opt, tp, 0))
        losses = []
        for bidx in batches[:4]:
            state, terms = step(state, dp.batch(m, [frames[i] for i in bidx], caps), 1.0)
            losses.append([float(terms["total"]), float(terms["fc"])])
        fc_runs[n] = (np.array(losses), state)
    assert np.all(fc_runs[1][0][:, 1] > 0)
    worst = max(worst, close(fc_runs[4][0], fc_runs[1][0], "fc losses"))
    for a, b in zip(jax.tree_util.tree_leaves(fc_runs[4][1]), jax.tree_util.tree_leaves(fc_runs[1][1])):
        worst = max(worst, close(a, b, "fc state"))

    # ---- end to end: finetune on 4 devices == 1 device; resume on 4 devices is bitwise ----------------
    def cfg(out, n):
        return FinetuneConfig(model="toy", out_dir=str(tmp / out), data=DataConfig(train=str(data), batch_size=3),
                              optim=OptimConfig(learning_rate=0.02, warmup_steps=2, ema_decay=0.9),
                              training=TrainingConfig(max_epochs=3, progress=False, patience=None),
                              parallel=ParallelConfig(devices=n))
    quiet = lambda msg: None
    one = finetune(cfg("one", 1), model=PairModel(seed=0), log=quiet)
    four = finetune(cfg("four", 4), model=PairModel(seed=0), log=quiet)
    assert four.compilations["main"] == {"train_step": 1, "eval_step": 1}
    for h1, h4 in zip(one.history, four.history):
        for k in h1:
            if k.startswith("valid_") or k == "train_loss":
                if np.isfinite(h1[k]):
                    worst = max(worst, close(h4[k], h1[k], f"history {k}"))
    for a, b in zip(jax.tree_util.tree_leaves(four.last_state), jax.tree_util.tree_leaves(one.last_state)):
        worst = max(worst, close(a, b, "finetune state"))
    part = finetune(cfg("resumed", 4), model=PairModel(seed=0), log=quiet, max_steps=5)
    assert part.interrupted
    res = finetune(cfg("resumed", 4), model=PairModel(seed=0), log=quiet, resume=True)
    la, lb = jax.tree_util.tree_leaves(four.last_state), jax.tree_util.tree_leaves(res.last_state)
    assert len(la) == len(lb)
    for a, b in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["valid_loss"] for h in four.history] == [h["valid_loss"] for h in res.history]
    assert len(res.last_state["params"]["offsets"].sharding.device_set) == 4
    # more devices than JAX sees: one clear line before any work
    from phonjax.config import ConfigError
    try:
        finetune(cfg("bad", 8), model=PairModel(seed=0), log=quiet)
    except ConfigError as e:
        assert "parallel.devices = 8" in str(e) and "4 device(s)" in str(e) and "\n" not in str(e), e
    else:
        raise AssertionError("expected ConfigError")
    assert not (tmp / "bad").exists()
    print(f"OK worst relative difference 1/2/4 devices {worst:.2e}")
""")


def test_data_parallel_equals_single_device():
    last = run_with_devices(SCRIPT, 4, timeout=600)
    print(last)
