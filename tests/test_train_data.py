"""Finetuning data and config: extxyz reading, validation errors, seeded split, references, batching.

Runtime ≈ 5 s (no model evaluation except in the energy-reference test, which uses the toy model).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel, rattled_lif, write_extxyz  # noqa: E402

from phonjax.config import ConfigError  # noqa: E402
from phonjax.train.config import FinetuneConfig, load_finetune_config  # noqa: E402
from phonjax.train.data import (DatasetError, compute_capacities, epoch_order, load_splits,  # noqa: E402
                                read_extxyz)


def _labelled(n=5, seed=0, stress=True):
    imgs = rattled_lif(n, seed=seed)
    rng = np.random.default_rng(seed)
    for at in imgs:
        kw = {"stress": rng.normal(size=6) * 1e-3} if stress else {}
        at.calc = SinglePointCalculator(at, energy=float(rng.normal()) - 10 * len(at),
                                        forces=rng.normal(size=(len(at), 3)), **kw)
    return imgs


def test_roundtrip_and_units(tmp_path):
    imgs = _labelled(3)
    p = write_extxyz(tmp_path / "d.extxyz", imgs, info={"E0_Li": -7.5, "E0_F": -31.25})
    ds = read_extxyz(p)
    assert len(ds) == 3
    assert ds.isolated_atom_energies == {"Li": -7.5, "F": -31.25}
    for f, at in zip(ds.frames, imgs):
        # extxyz stores ~8 significant digits
        np.testing.assert_allclose(f.energy, at.get_potential_energy(), rtol=1e-7)
        np.testing.assert_allclose(f.forces, at.get_forces(), rtol=1e-6, atol=1e-8)
        s = at.get_stress(voigt=False)  # ASE's (3, 3), same sign convention
        np.testing.assert_allclose(f.stress, s, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(f.stress, f.stress.T)


def test_isolated_atom_frames(tmp_path):
    import ase
    iso = ase.Atoms("Li", cell=np.eye(3) * 20, pbc=True)
    iso.calc = SinglePointCalculator(iso, energy=-7.25, forces=np.zeros((1, 3)))
    iso.info["config_type"] = "IsolatedAtom"
    p = write_extxyz(tmp_path / "d.extxyz", [iso] + _labelled(2))
    ds = read_extxyz(p)
    assert len(ds) == 2 and ds.isolated_atom_energies == {"Li": -7.25}


def test_split_seeded_4_to_1(tmp_path):
    p = write_extxyz(tmp_path / "d.extxyz", _labelled(10))
    tr, va = load_splits(str(p), None, valid_fraction=0.2, seed=3)
    tr2, va2 = load_splits(str(p), None, valid_fraction=0.2, seed=3)
    assert (len(tr), len(va)) == (8, 2)
    assert [f.source for f in va.frames] == [f.source for f in va2.frames]
    assert {f.source for f in tr.frames} | {f.source for f in va.frames} == {f"{p}#{k}" for k in range(10)}


def test_epoch_order_is_a_pure_function():
    a = epoch_order(10, 3, 1, 0, 5)
    assert a == epoch_order(10, 3, 1, 0, 5)
    assert a != epoch_order(10, 3, 1, 0, 6)
    assert sorted(sum(a, [])) == list(range(10)) and [len(b) for b in a] == [3, 3, 3, 1]


def test_capacities_fit_any_batch():
    sizes = [(8, 100), (16, 300), (8, 120), (12, 250)]
    c = compute_capacities(sizes, 2)
    assert c.n_graphs == 3 and c.n_nodes >= 16 + 12 + 1 and c.n_edges >= 300 + 250 + 1


# ---------------------------------------------------------------- bad input → clear errors
def test_missing_forces(tmp_path):
    imgs = _labelled(3)
    imgs[1].calc = SinglePointCalculator(imgs[1], energy=-1.0)
    p = write_extxyz(tmp_path / "d.extxyz", imgs)
    with pytest.raises(DatasetError, match="frame 1: no forces"):
        read_extxyz(p)


def test_missing_energy(tmp_path):
    imgs = _labelled(2)
    imgs[0].calc = SinglePointCalculator(imgs[0], forces=np.zeros((len(imgs[0]), 3)))
    p = write_extxyz(tmp_path / "d.extxyz", imgs)
    with pytest.raises(DatasetError, match="frame 0: no energy"):
        read_extxyz(p)


@pytest.mark.parametrize("what", ["energy", "forces", "stress"])
def test_nan_labels(tmp_path, what):
    imgs = _labelled(3)
    at = imgs[2]
    e, f, s = at.get_potential_energy(), at.get_forces().copy(), at.get_stress().copy()
    if what == "energy":
        e = float("nan")
    elif what == "forces":
        f[3, 1] = np.nan
    else:
        s[2] = np.nan
    at.calc = SinglePointCalculator(at, energy=e, forces=f, stress=s)
    p = write_extxyz(tmp_path / "d.extxyz", imgs)
    with pytest.raises(DatasetError, match=f"frame 2: non-finite.*{what}"):
        read_extxyz(p)


def test_unknown_species(tmp_path):
    imgs = _labelled(6)
    imgs[4].symbols[0] = "Na"
    p = write_extxyz(tmp_path / "d.extxyz", imgs)
    with pytest.raises(DatasetError, match=r"species \['Na'\] unknown to the model"):
        load_splits(str(p), None, valid_fraction=0.5, seed=0, type_names=("Li", "F"))


def test_empty_split(tmp_path):
    p = write_extxyz(tmp_path / "d.extxyz", _labelled(2))
    with pytest.raises(DatasetError, match="empty"):
        load_splits(str(p), None, valid_fraction=0.2, seed=0)
    e = tmp_path / "empty.extxyz"
    e.write_text("")
    with pytest.raises(DatasetError):
        load_splits(str(e), None)


def test_missing_file():
    with pytest.raises(DatasetError, match="not found"):
        read_extxyz("/nonexistent/x.extxyz")


# ---------------------------------------------------------------- config
def test_config_unknown_key_and_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: m\nout_dir: o\ndata: {train: t.extxyz, batch_sise: 3}\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_finetune_config(y)
    y.write_text("model: m\nout_dir: o\ndata: {train: t.extxyz}\n")
    c = load_finetune_config(y, ["optim.learning_rate=3e-4", "freeze.train=readout"])
    assert isinstance(c, FinetuneConfig) and c.optim.learning_rate == 3e-4 and c.freeze.train == "readout"
    with pytest.raises(ConfigError, match="learning_rate"):
        load_finetune_config(y, ["optim.learning_rate=-1"])
    with pytest.raises(ConfigError, match="fc.reference"):
        load_finetune_config(y, ["loss.fc.weight=1.0"])


def test_shipped_config_loads():
    root = Path(__file__).resolve().parents[1]
    c = load_finetune_config(root / "configs" / "finetune_lif.yaml")
    assert c.data.valid_fraction == pytest.approx(0.2)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs")
                                        .glob("finetune_*.yaml")))
def test_every_shipped_finetune_config_loads(name):
    """No unknown key or bad value in any finetune config the README points to (they are read strictly)."""
    c = load_finetune_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert c.training.max_epochs >= 1


def test_energy_offsets_from_isolated_atoms(tmp_path):
    """δ_t = E_iso^DFT − E_model(isolated atom): for the toy model E(isolated) = shift[t]."""
    from phonjax.train.data import Dataset
    from phonjax.train.loop import energy_offsets
    import jax.numpy as jnp
    m = PairModel(seed=0)
    tp = {"model": m.initial_params(), "offsets": jnp.zeros(2)}
    ds = read_extxyz(write_extxyz(tmp_path / "d.extxyz", _labelled(2)))
    ds = Dataset(ds.frames, {"Li": -7.0, "F": -30.0})
    off = energy_offsets(m, tp, ds, "isolated_atoms", lambda s: None)
    shifts = np.asarray(m.initial_params()["per_type_energy_scale_shift"]["shifts"])
    np.testing.assert_allclose(off, np.array([-7.0, -30.0]) - shifts, atol=1e-12)


def test_virial_instead_of_stress(tmp_path):
    imgs = _labelled(2, stress=True)
    ref = [at.get_stress(voigt=False) for at in imgs]
    plain = []
    for at in imgs:
        a = at.copy()
        a.calc = SinglePointCalculator(a, energy=at.get_potential_energy(), forces=at.get_forces())
        a.info["virial"] = (-at.get_stress(voigt=False) * at.get_volume()).reshape(-1)  # W = −V σ
        plain.append(a)
    ds = read_extxyz(write_extxyz(tmp_path / "v.extxyz", plain))
    for f, s in zip(ds.frames, ref):
        np.testing.assert_allclose(f.stress, s, rtol=1e-6, atol=1e-12)
