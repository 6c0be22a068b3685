"""Short-range (dipole-subtracted) models end to end: config, finetuning export, prediction; random init.

* predict(lr='auto') on a short-range model directory uses 'ewald' with the model's own Born file; for a model
  whose energy is identically zero the Γ frequencies are then exactly the dipole term: acoustic 0,
  TO² = −NA/3 (Lorentz field of the cubic dipole lattice) and LO² − TO² = NA = (4π e²/V) (q̂·Z)² / (q̂·ε∞·q̂)
  · (1/m_Li + 1/m_F) (the non-analytic term, Eq. 5, for rock salt);
* a user Born that differs, or a forced other mode, is obeyed with a warning and recorded in summary.json;
* finetuning with data.short_range writes metadata.json["long_range"] and model_dir/BORN, and logs the RMS of
  the subtracted labels; training.init: random re-initialises the parameters.
Runtime ≈ 60 s on a loaded 2-core machine.
"""
from __future__ import annotations

import json
from pathlib import Path
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel, label_with, write_extxyz  # noqa: E402

from phonjax import units  # noqa: E402
from phonjax.io.born import read_born  # noqa: E402
from phonjax.config import ConfigError, from_dict  # noqa: E402
from phonjax.longrange.dipole_labels import KIND, long_range_record  # noqa: E402
from phonjax.models import load_model  # noqa: E402
from phonjax.models.nequip.model import Model  # noqa: E402
from phonjax.io.structure import read_structure as load_structure  # noqa: E402
from phonjax.predict import predict  # noqa: E402
from phonjax.structure import make_supercell  # noqa: E402
from phonjax.train.config import FinetuneConfig  # noqa: E402
from phonjax.models.nequip.train_adapter import NequipTrainable, nequip_arch_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIF = ROOT / "examples" / "LiF"
ARCH = dict(r_max=3.0, l_max=1, num_layers=2, num_features=4, radial_mlp_width=8, num_bessels=4)


@pytest.fixture(scope="module")
def lif():
    prim = load_structure(LIF / "POSCAR")
    return prim, read_born(LIF / "BORN", prim)


@pytest.fixture(scope="module")
def zero_model_dir(lif, tmp_path_factory):
    prim, born = lif
    m = Model.init(nequip_arch_config(("Li", "F"), **ARCH), seed=0)
    zero = Model(m.config, jax.tree_util.tree_map(jnp.zeros_like, m.params),
                 {"long_range": long_range_record(born, prim, born_file=str(LIF / "BORN"), reference=str(LIF / "POSCAR"),
                                                  supercell_matrix=3)})
    d = zero.save(tmp_path_factory.mktemp("sr") / "model")
    shutil.copyfile(LIF / "BORN", d / "BORN")
    return d


def test_predict_short_range_model_adds_full_dipole_term(lif, zero_model_dir, tmp_path):
    prim, born = lif
    res = predict(prim, zero_model_dir, 2, out_dir=tmp_path / "a", progress=False, allow_small_supercell=True, npoints=5)
    assert res.lr == "ewald"
    info = json.loads((tmp_path / "a" / "summary.json").read_text())["short_range_model"]
    assert info["kind"] == KIND and info["lr_used"] == "ewald" and info["born_source"].startswith("model")
    g = np.sort(res.gamma_frequencies)
    z = born.zstar[0, 0, 0]
    lo2 = born.nac_prefactor(prim.volume) * z ** 2 / born.epsilon[0, 0] * (1 / prim.masses[0] + 1 / prim.masses[1])
    na = lo2 * units.VASP_TO_THZ ** 2  # THz²
    assert np.abs(g[2:5]).max() < 1e-3  # acoustic
    # TO² = −NA/3 (the Lorentz field of the cubic point-dipole lattice: nothing short-ranged holds it up),
    # LO² − TO² = NA (the non-analytic term): both exact for the full Ewald C_dd of rock salt
    to2, lo2_thz = -g[0] ** 2, g[5] ** 2
    assert abs(g[0] - g[1]) < 1e-6 and g[0] < 0
    assert abs(to2 + na / 3) < 1e-6 * na and abs(lo2_thz - to2 - na) < 1e-6 * na


def test_predict_short_range_model_user_choices_warn(lif, zero_model_dir, tmp_path):
    prim, born = lif
    other = tmp_path / "BORN"
    other.write_text((LIF / "BORN").read_text().replace("1.05380556", "1.10000000"))
    with pytest.warns(UserWarning) as rec:
        res = predict(prim, zero_model_dir, 2, born=other, lr="none", out_dir=tmp_path / "b", progress=False, allow_small_supercell=True,
                      npoints=5)
    msgs = " ".join(str(w.message) for w in rec)
    assert "differ from those the short-range model was trained with" in msgs and "only lr='ewald'" in msgs
    assert res.lr == "none"
    info = json.loads((tmp_path / "b" / "summary.json").read_text())["short_range_model"]
    assert info["lr_used"] == "none" and info["born_source"].startswith("user") and info["born_differs_from_model"]


def test_config_short_range_and_init():
    base = {"model": "m", "out_dir": "o", "data": {"train": "t.xyz"}}
    cfg = from_dict(FinetuneConfig, {**base, "data": {"train": "t.xyz", "short_range": {
        "born": "B", "reference": "P", "supercell": [3, 3, 3]}}, "training": {"init": "random"}})
    assert cfg.data.short_range.supercell == (3, 3, 3) and cfg.data.short_range.stress and cfg.training.init == "random"
    assert from_dict(FinetuneConfig, base).data.short_range is None
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(FinetuneConfig, {**base, "data": {"train": "t", "short_range": {"born": "B", "reference": "P",
                                                                                 "lambda": 1}}})
    with pytest.raises(ConfigError, match="missing required key 'reference'"):
        from_dict(FinetuneConfig, {**base, "data": {"train": "t", "short_range": {"born": "B"}}})
    with pytest.raises(ConfigError, match="pretrained"):
        from_dict(FinetuneConfig, {**base, "training": {"init": "scratch"}})
    with pytest.raises(ConfigError, match="supercell"):
        from_dict(FinetuneConfig, {**base, "data": {"train": "t", "short_range": {"born": "B", "reference": "P",
                                                                                 "supercell": [2, 2]}}})


def test_random_init_reinitialises_parameters():
    m = Model.init(nequip_arch_config(("Li", "F"), **ARCH), seed=0)
    r = NequipTrainable(m).reinitialized(7)
    a, b = jax.tree_util.tree_leaves(m.params), jax.tree_util.tree_leaves(r.initial_params())
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    assert any(float(jnp.abs(x - y).max()) > 1e-3 for x, y in zip(a, b))
    assert r.config == m.config and "random" in r.model.metadata["init"]


def test_finetune_short_range_random_init_export_and_predict(lif, tmp_path):
    from phonjax.train.loop import finetune
    prim, born = lif
    sc = make_supercell(prim, 2).crystal
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(4):
        a = sc.to_ase()
        a.positions += rng.normal(scale=0.06, size=a.positions.shape)
        imgs.append(a)
    teacher = PairModel(seed=1, scale=1.3)
    data = write_extxyz(tmp_path / "d.extxyz", label_with(teacher, {"model": teacher.initial_params(),
                                                                   "offsets": jnp.zeros(2)}, imgs))
    m = Model.init(nequip_arch_config(("Li", "F"), **ARCH), seed=0, metadata={"model_name": "tiny"})
    start = m.save(tmp_path / "start")
    cfg = from_dict(FinetuneConfig, {
        "model": str(start), "out_dir": str(tmp_path / "ft"),
        "data": {"train": str(data), "batch_size": 2, "use_stress": False,
                 "short_range": {"born": str(LIF / "BORN"), "reference": str(LIF / "POSCAR"), "supercell": [2, 2, 2],
                                 "stress": False, "cache": False}},
        "optim": {"learning_rate": 1e-3}, "training": {"max_epochs": 1, "progress": False, "init": "random",
                                                       "energy_reference": "fit"}})
    logs = []
    res = finetune(cfg, log=logs.append)
    text = "\n".join(logs)
    assert "parameters re-initialised" in text and "short-range labels (train, 3 structures)" in text
    meta = json.loads((res.model_dir / "metadata.json").read_text())
    assert meta["long_range"]["kind"] == KIND and meta["long_range"]["supercell_matrix"] == (np.eye(3) * 2).tolist()
    assert np.allclose(meta["long_range"]["born"]["born_charges"], born.zstar)
    assert (res.model_dir / "BORN").read_text() == (LIF / "BORN").read_text()
    out = load_model(res.model_dir)
    a, b = jax.tree_util.tree_leaves(out.params), jax.tree_util.tree_leaves(m.params)
    assert any(float(jnp.abs(x - y).max()) > 1e-2 for x, y in zip(a, b))  # not the starting weights
    p = predict(prim, res.model_dir, 2, out_dir=tmp_path / "p", progress=False, allow_small_supercell=True, npoints=3)
    assert p.lr == "ewald" and p.extra["short_range_model"]["born_source"].startswith("model")
