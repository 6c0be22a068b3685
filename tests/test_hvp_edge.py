"""Mode "edge" of the Hessian-vector products: the displaced atoms' edges as a separate input must give the
same force constants as the full Hessian (float64, ≤ 1e-10 relative), with and without edge chunking and ZBL,
on a symmetric and on a P1 cell; energies without that input are refused in that mode and "auto" falls back."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from phonjax.force_constants import ForceConstantsError, force_constants
from phonjax.hvp import EDGE_MODE_MAX_FRACTION, resolve_hvp_mode
from phonjax.potentials import rock_salt_potential
from phonjax.structure import Crystal, make_supercell
from phonjax.testing import count_compilations

model_mod = pytest.importorskip("phonjax.models.nequip.model")
from phonjax.models.nequip.nn.config import ModelConfig  # noqa: E402


def _model(zbl: bool):
    cfg = ModelConfig(type_names=("Li", "F"), r_max=3.2, feature_irreps_hidden=("4x0e+4x1o", "4x0e+2x1o", "4x0e"),
                      radial_mlp_depth=(1, 1, 1), radial_mlp_width=(8, 8, 8), avg_num_neighbors=8.0,
                      irreps_edge_sh="1x0e+1x1o+1x2e", type_embed_num_features=4, dtype="float64", zbl=zbl)
    return model_mod.Model.init(cfg, seed=1)


def _rattled(seed=2, amp=0.05):
    at = bulk("LiF", "rocksalt", a=4.03)
    at.positions += amp * np.random.default_rng(seed).standard_normal(at.positions.shape)
    return at


@pytest.mark.parametrize("zbl,edge_chunk", [(False, 0), (True, 16)])
def test_edge_mode_equals_hessian(zbl, edge_chunk):
    model = _model(zbl)
    at = _rattled()                                   # P1 after rattling: every row computed
    sc = make_supercell(Crystal.from_ase(at), (1, 1, 2))
    kw = dict(symmetrize=False, asr=None, allow_small_supercell=True, edge_chunk=edge_chunk)
    ref = force_constants(model, at, sc, mode="hessian", **kw).fc
    scale = np.abs(ref).max()
    for chunk in (None, 2):
        fc = force_constants(model, at, sc, mode="edge", chunk_size=chunk, **kw).fc
        assert np.abs(fc - ref).max() <= 1e-10 * scale, (chunk, np.abs(fc - ref).max() / scale)


def test_edge_mode_with_site_symmetry_matches_jvp():
    model = _model(False)
    at = bulk("LiF", "rocksalt", a=4.03)
    a = force_constants(model, at, 2, mode="jvp", allow_small_supercell=True)
    b = force_constants(model, at, 2, mode="edge", allow_small_supercell=True)
    assert b.report.n_hvp == a.report.n_hvp == 2
    assert np.abs(a.fc - b.fc).max() <= 1e-10 * np.abs(a.fc).max()
    # the same shape again: no new compilation
    at2 = at.copy()
    at2.positions[0] += 0.001
    force_constants(model, at2, 2, mode="edge", symmetry=False, allow_small_supercell=True)
    with count_compilations() as c:
        force_constants(model, at2, 2, mode="edge", symmetry=False, allow_small_supercell=True)
    assert c.count == 0


def test_auto_mode_resolution_and_refusal():
    model = _model(False)
    at = bulk("LiF", "rocksalt", a=4.03)
    small = model.bind(make_supercell(Crystal.from_ase(at), 2).crystal)     # 2 of 16 atoms: 1/4 of the edges
    large = model.bind(make_supercell(Crystal.from_ase(at), 3).crystal)     # 2 of 54: under EDGE_MODE_MAX_FRACTION
    assert resolve_hvp_mode("auto", small, [0, 1]) == ("jvp", None)
    mode, active = resolve_hvp_mode("auto", large, [0, 1])
    n_real = int(np.sum(np.asarray(large.graph.edge_mask)))
    assert mode == "edge" and 0 < int(np.sum(np.asarray(active[1]))) <= EDGE_MODE_MAX_FRACTION * n_real
    assert resolve_hvp_mode("edge", small, [0, 1])[0] == "edge"            # asked for: taken at any share
    assert resolve_hvp_mode("jvp", large, [0, 1]) == ("jvp", None)
    pot, nacl = rock_salt_potential(), bulk("NaCl", "rocksalt", a=5.64)
    fc_auto = force_constants(pot, nacl, 2, allow_small_supercell=True)          # a plain energy: "auto" → jvp
    fc_jvp = force_constants(pot, nacl, 2, mode="jvp", allow_small_supercell=True)
    assert np.array_equal(fc_auto.fc, fc_jvp.fc)
    with pytest.raises(ForceConstantsError, match="edge"):
        force_constants(pot, nacl, 2, mode="edge", allow_small_supercell=True)
    with pytest.raises(ForceConstantsError, match="unknown mode"):
        force_constants(pot, nacl, 2, mode="egde", allow_small_supercell=True)
