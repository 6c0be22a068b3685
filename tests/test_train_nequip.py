"""Finetuning a converted torch-nequip model (tiny, every weight perturbed, with ZBL) on LiF data.

Checks: the converted model equals torch before training; the validation loss falls;
interrupted + resumed run == uninterrupted (bitwise, float64); train/eval steps compile once; freezing
(last layer only) leaves earlier layers and nequip-fixed shifts bit-identical; the saved finetuned model,
reloaded with phonjax.models.load_model, predicts exactly what the in-memory finetuned model predicts, and
what training saw (offsets folded into the shifts); bad input fails before training.
Runtime ≈ 45 s CPU (≈ 80 s wall on a loaded 2-core machine). One-step/overfit checks: test_train_loop.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("nequip")
sys.path.insert(0, str(Path(__file__).parent))
from model_fixtures import build_torch_model, torch_reference  # noqa: E402
from train_helpers import PairModel, label_with, rattled_lif, write_extxyz  # noqa: E402

from phonjax.models import load_model  # noqa: E402
from phonjax.train.config import (DataConfig, FinetuneConfig, FreezeConfig, LossConfig,  # noqa: E402
                                  OptimConfig, TrainingConfig)
from phonjax.train.data import DatasetError, compute_capacities, read_extxyz  # noqa: E402
from phonjax.train.loop import finetune  # noqa: E402
from phonjax.train.model_api import make_batch, predict  # noqa: E402
from phonjax.models.nequip.train_adapter import NequipTrainable  # noqa: E402

TINY = dict(type_names=["Li", "F"], r_max=3.5, irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4,
            feature_irreps_hidden=["4x0e+2x1o", "4x0e"], radial_mlp_depth=[1, 1], radial_mlp_width=[8, 8],
            num_bessels=6, bessel_trainable=True, polynomial_cutoff_p=6, avg_num_neighbors=10.0)


@pytest.fixture(scope="module")
def converted():
    from phonjax.convert.nequip import from_torch_module
    tm = build_torch_model(TINY, seed=3)
    return tm, from_torch_module(tm)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("nq")
    teacher = PairModel(seed=1, scale=1.3)
    tp = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    imgs = label_with(teacher, tp, rattled_lif(6, seed=0, reps=(1, 1, 1)) + rattled_lif(2, seed=1, reps=(2, 1, 1)))
    return write_extxyz(d / "d.extxyz", imgs, info={"E0_Li": -1.5, "E0_F": -2.5})


def _cfg(data, out, **kw):
    return FinetuneConfig(model="converted", out_dir=str(out), data=DataConfig(train=str(data), batch_size=3),
                          loss=LossConfig(forces_weight=10.0),
                          optim=OptimConfig(learning_rate=5e-3, warmup_steps=1, ema_decay=0.9),
                          freeze=FreezeConfig(train="last_layers", last_k_layers=1),
                          training=TrainingConfig(max_epochs=2, progress=False, patience=None), **kw)


def test_converted_model_matches_torch(converted):
    tm, model = converted
    at = rattled_lif(1, seed=5, reps=(1, 1, 1))[0]
    e_t, f_t, s_t, _ = torch_reference(tm, at)
    e, f, s = model.energy_forces_stress(at)
    assert abs(e - e_t) < 1e-10 and np.abs(f - f_t).max() < 1e-10 and np.abs(s - s_t).max() < 1e-10


def test_finetune_resume_freeze_export(converted, data, tmp_path):
    _, model = converted
    full = finetune(_cfg(data, tmp_path / "a"), model=NequipTrainable(model), log=lambda s: None)
    part = finetune(_cfg(data, tmp_path / "b"), model=NequipTrainable(model), log=lambda s: None, max_steps=3)
    res = finetune(_cfg(data, tmp_path / "b"), model=NequipTrainable(model), log=lambda s: None, resume=True)
    assert part.interrupted and not res.interrupted
    for a, b in zip(jax.tree_util.tree_leaves(full.last_state), jax.tree_util.tree_leaves(res.last_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert full.compilations["main"] == {"train_step": 1, "eval_step": 1}
    h = full.history
    assert h[-1]["valid_loss"] < h[0]["valid_loss"]

    # freezing: only layer1_convnet + readout (+ trainable scales, offsets) moved
    p0, p1 = model.params, full.params["model"]
    np.testing.assert_array_equal(np.asarray(p0["layer0_convnet"]["conv"]["linear_1"]["weight"]),
                                  np.asarray(p1["layer0_convnet"]["conv"]["linear_1"]["weight"]))
    np.testing.assert_array_equal(np.asarray(p0["type_embed"]["embedding"]), np.asarray(p1["type_embed"]["embedding"]))
    np.testing.assert_array_equal(np.asarray(p0["per_type_energy_scale_shift"]["shifts"]),
                                  np.asarray(p1["per_type_energy_scale_shift"]["shifts"]))  # fixed in nequip
    assert not np.array_equal(np.asarray(p0["per_atom_energy_readout"]["weight_0"]),
                              np.asarray(p1["per_atom_energy_readout"]["weight_0"]))

    # export: reload == in-memory finetuned model (bitwise) == what training predicted (offsets folded)
    ad = NequipTrainable(model)
    mem = ad.to_model(full.params)
    disk = load_model(full.model_dir)
    assert disk.metadata["finetune"]["energy_offsets"].keys() == {"Li", "F"}
    ds = read_extxyz(data)
    caps = compute_capacities([ad.frame_sizes(f) for f in ds.frames], 2)
    for f in (ds.frames[0], ds.frames[7]):
        e1, f1, s1 = mem.energy_forces_stress((f.positions, f.cell, f.numbers))
        e2, f2, s2 = disk.energy_forces_stress((f.positions, f.cell, f.numbers))
        assert e1 == e2
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(s1, s2)
        pr = predict(ad, full.params, make_batch(ad, [f], caps))
        n = f.n_atoms
        assert abs(float(pr.energy[0]) - e2) < 1e-9
        np.testing.assert_allclose(np.asarray(pr.forces[:n]), f2, atol=1e-10)
        np.testing.assert_allclose(np.asarray(pr.stress[0]), s2, atol=1e-10)


def test_bad_input_fails_before_training(converted, data, tmp_path):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    imgs = ase.io.read(data, index=":")
    bad = imgs[3].copy()
    bad.symbols[0] = "Na"
    bad.calc = SinglePointCalculator(bad, energy=-1.0, forces=np.zeros((len(bad), 3)))
    p = write_extxyz(tmp_path / "bad.extxyz", imgs[:3] + [bad] + imgs[4:])
    # the model is loaded from a phonjax model directory named in the config (the CLI's path)
    converted[1].save(tmp_path / "start_model")
    y = tmp_path / "ft.yaml"
    y.write_text(f"model: {tmp_path / 'start_model'}\nout_dir: {tmp_path / 'o'}\ndata: {{train: {p}}}\n")
    with pytest.raises(DatasetError, match=r"\['Na'\] unknown to the model"):
        finetune(y, overrides=["training.progress=false"], log=lambda s: None)
    assert not (tmp_path / "o").exists()
    from phonjax.models.nequip.model import ModelLoadError
    with pytest.raises(ModelLoadError):
        finetune(y, overrides=[f"model={tmp_path / 'nowhere'}"], log=lambda s: None)
