"""Parity of phonjax NequIP with torch nequip 0.19.1 on random, fully perturbed models (float64:
|ΔE| ≤ 1e-10 eV, |ΔF| ≤ 1e-10 eV/Å, |Δσ| ≤ 1e-10 eV/Å³, |ΔH| ≤ 1e-9 eV/Å²; torch Hessian by double autograd).

Models: a small parity-off 3-layer model (4 types, per-layer radial depths, ZBL), a parity-on model
(0e/0o/1o/1e/2e/2o features, fixed Bessels, no ZBL), the full OAM-L architecture (89 types, 6 layers, l_max 3,
9.6M parameters; slow), and a float32 model (errors printed, loose bound).
Runtime ≈ 2 min on 2 cores without the slow OAM-L test (≈ 3 min more with it).
"""
import jax
import numpy as np
import pytest

pytest.importorskip("nequip")

import phonjax  # noqa: F401,E402
from model_fixtures import (OAM_L, PARITY, SMALL, build_torch_model, dilute_cell, lif_primitive,  # noqa: E402
                            lif_rattled_supercell, torch_reference, triclinic_multi)

from phonjax.convert.nequip import from_torch_module  # noqa: E402

TOL_E, TOL_F, TOL_S, TOL_H = 1e-10, 1e-10, 1e-10, 1e-9


def _hessian(model, atoms):
    f = model.bind(atoms)
    n = len(atoms)
    return np.asarray(jax.hessian(f)(atoms.positions, atoms.cell.array)).reshape(3 * n, 3 * n)


def _compare(tm, model, atoms, hessian=False, label="", caps=None):
    E, F, S, H = torch_reference(tm, atoms, hessian=hessian)
    graph = model.graph(atoms, **caps) if caps else None  # shared capacities: one compilation per test
    e, f, s = model.energy_forces_stress(atoms, graph=graph)
    errs = dict(E=abs(E - e), F=float(np.abs(F - f).max()), S=float(np.abs(S - s).max()))
    if hessian:
        errs["H"] = float(np.abs(H - _hessian(model, atoms)).max())
    print(f"{label} n={len(atoms)} " + " ".join(f"|Δ{k}|={v:.2e}" for k, v in errs.items()))
    return errs


@pytest.fixture(scope="module")
def small():
    tm = build_torch_model(SMALL, seed=3, zbl=True)
    return tm, from_torch_module(tm, check=False)


CAPS = dict(n_nodes=64, n_edges=1536)


@pytest.mark.parametrize("make,hessian", [(lif_primitive, False), (triclinic_multi, True), (dilute_cell, False),
                                          (lambda: lif_rattled_supercell(3), False)],
                         ids=["LiF-prim", "triclinic", "dilute", "LiF-3x3x3-rattled"])
def test_small_model_parity(small, make, hessian):
    tm, model = small
    errs = _compare(tm, model, make(), hessian=hessian, label="small", caps=CAPS)
    assert errs["E"] <= TOL_E and errs["F"] <= TOL_F and errs["S"] <= TOL_S
    if hessian:
        assert errs["H"] <= TOL_H


def test_parity_on_model():
    tm = build_torch_model(PARITY, seed=5, zbl=False)
    model = from_torch_module(tm, check=False)
    assert not model.config.zbl and not model.config.bessel_trainable
    for atoms, hess in ((lif_primitive(), True), (lif_rattled_supercell(2, seed=4), False)):
        errs = _compare(tm, model, atoms, hessian=hess, label="parity-on", caps=dict(n_nodes=16, n_edges=384))
        assert errs["E"] <= TOL_E and errs["F"] <= TOL_F and errs["S"] <= TOL_S
        if hess:
            assert errs["H"] <= TOL_H


def test_float32_model_errors_are_small():
    """float32 torch model vs float32 phonjax model (same weights): round-off level differences."""
    tm = build_torch_model(SMALL, seed=8, dtype="float32", zbl=True)
    model = from_torch_module(tm, check=False)
    assert model.dtype == "float32"
    atoms = lif_rattled_supercell(2, seed=2)
    E, F, S, _ = torch_reference(tm, atoms)
    e, f, s = model.energy_forces_stress(atoms)
    dE, dF, dS = abs(E - e), float(np.abs(F - f).max()), float(np.abs(S - s).max())
    print(f"float32 n={len(atoms)} |ΔE|={dE:.2e} |ΔF|={dF:.2e} |ΔS|={dS:.2e} (|E|={abs(E):.1f})")
    assert dE <= 1e-5 * len(atoms) and dF <= 1e-4 and dS <= 1e-5
    # converting the float32 weights to a float64 phonjax model changes results only at float32 round-off
    m64 = from_torch_module(tm, dtype="float64", check=False)
    assert m64.dtype == "float64"
    e64, f64, _ = m64.energy_forces_stress(atoms)
    assert abs(e64 - E) <= 1e-4 * len(atoms) and np.abs(f64 - F).max() <= 1e-3


@pytest.mark.slow
def test_oam_l_architecture_parity():
    """Full NequIP-OAM-L architecture (random perturbed weights): E/F/σ + Hessian on the LiF primitive cell
    (rattled multi-atom cells are covered by the small models, which share every code path)."""
    tm = build_torch_model(OAM_L, seed=11, zbl=True, perturb=0.1)
    model = from_torch_module(tm, check=False)
    n_torch = sum(p.numel() for p in tm.parameters())
    assert n_torch == 9_605_777  # OAM-L trainable parameter count
    errs = _compare(tm, model, lif_primitive(), hessian=True, label="OAM-L")
    assert errs["E"] <= TOL_E and errs["F"] <= TOL_F and errs["S"] <= TOL_S and errs["H"] <= TOL_H


def test_variant_options_parity():
    """Per-type avg_num_neighbors, resnet layers and a hidden readout layer (self-check at conversion too)."""
    arch = dict(SMALL, avg_num_neighbors={"Li": 10.0, "F": 14.0, "Mg": 20.0, "O": 7.0},
                feature_irreps_hidden=["6x0e+4x1o+3x2e", "6x0e+4x1o+3x2e", "6x0e"],
                readout_mlp_hidden_layers_depth=1, readout_mlp_hidden_layers_width=5, convnet_resnet=True)
    tm = build_torch_model(arch, seed=21, zbl=True)
    model = from_torch_module(tm, check=True)
    c = model.config
    assert len(c.avg_num_neighbors) == 4 and c.convnet_resnet and c.readout_hidden == (5,)
    errs = _compare(tm, model, triclinic_multi(), label="variants", caps=CAPS)
    assert errs["E"] <= TOL_E and errs["F"] <= TOL_F and errs["S"] <= TOL_S
