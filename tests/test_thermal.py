"""Thermal properties (F, S, C_V) against phonopy's own, on the same force constants without NAC."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax.thermal import default_mesh, mesh_qpoints, mesh_thermal, thermal_properties, time_reversal_mesh

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "phonopy-examples"


@pytest.mark.parametrize("name", ["NaCl", "MgO"])
def test_thermal_properties_match_phonopy(name):
    pytest.importorskip("phonopy")
    d = EXAMPLES / name
    if not d.is_dir():
        pytest.skip(f"{d} not present")
    from phonopy_data import load_example
    ph, sc, fc, _ = load_example(d)
    from phonjax.io.phonopy import from_phonopy
    fco = from_phonopy(ph, is_nac=False)
    mesh = (8, 8, 8)
    temps = np.array([0.0, 10.0, 100.0, 300.0, 1000.0])
    ours = thermal_properties(fco.frequencies(mesh_qpoints(mesh), lr="none"), temps, mesh=mesh)

    ph.nac_params = None
    ph.run_mesh(list(mesh), with_eigenvectors=False, is_mesh_symmetry=True, is_gamma_center=True)
    ph.run_thermal_properties(temperatures=temps, cutoff_frequency=1e-3)  # our default
    tp = ph.thermal_properties
    ref = {"free_energy": tp.free_energy, "entropy": tp.entropy, "heat_capacity": tp.heat_capacity}
    for key, mine in (("free_energy", ours.free_energy), ("entropy", ours.entropy),
                      ("heat_capacity", ours.heat_capacity)):
        r = np.asarray(ref[key])
        scale = np.maximum(np.abs(r), 1e-3 * np.abs(r).max())  # S, C_V vanish at 0 K: relative to the scale there
        np.testing.assert_array_less(np.abs(mine - r) / scale, 1e-6, err_msg=key)
    assert ours.n_excluded == 3  # the acoustic modes at Γ
    assert ours.at(300.0)["Cv"] == pytest.approx(ref["heat_capacity"][3], rel=1e-6)
    merged = mesh_thermal(fco, None, mesh, temps)   # q and −q merged (predict's path): the same numbers
    for key in ("free_energy", "entropy", "heat_capacity"):
        r = np.asarray(ref[key])
        scale = np.maximum(np.abs(r), 1e-3 * np.abs(r).max())
        np.testing.assert_array_less(np.abs(getattr(merged, key) - r) / scale, 1e-6, err_msg=key)


def test_classical_and_quantum_limits():
    nu = np.array([[1.0, 2.0, 5.0]])                 # THz, one q
    hi = thermal_properties(nu, [1e5])              # k_BT ≫ hν: C_V → 3 k_B per cell (Dulong–Petit)
    from phonjax import units
    r = units.KB_EV_K * units.EV_TO_KJ_MOL * 1000
    assert hi.heat_capacity[0] == pytest.approx(3 * r, rel=1e-6)
    lo = thermal_properties(nu, [0.0, 1.0, 0.01])
    assert lo.entropy[0] == 0 and lo.heat_capacity[0] == 0
    assert lo.free_energy[0] == pytest.approx(lo.zero_point_energy)
    assert 0 < lo.heat_capacity[1] < 1e-12 and lo.heat_capacity[2] == 0   # frozen out; e^x overflow → 0, not NaN
    assert np.all(np.isfinite([lo.free_energy, lo.entropy, lo.heat_capacity]))
    with pytest.raises(ValueError, match="temperatures"):
        thermal_properties(nu, [-1.0])
    with pytest.raises(ValueError, match="not computed"):
        lo.at(300.0)
    q = mesh_qpoints((3, 4, 1))
    assert q.shape == (12, 3) and np.all(q > -0.5 - 1e-12) and np.all(q <= 0.5 + 1e-12)
    assert np.any(np.all(q == 0, axis=1))


def test_time_reversal_mesh_and_default_mesh():
    for mesh in ((4, 4, 4), (3, 5, 2), (1, 1, 1)):
        q, w = time_reversal_mesh(mesh)
        full = mesh_qpoints(mesh)
        assert w.sum() == len(full)
        # every full-mesh point is a kept point or minus one (mod 1), each exactly once by weight
        kept = {tuple(np.round(np.mod(x, 1) * mesh).astype(int) % mesh) for x in q}
        minus = {tuple(np.round(np.mod(-x, 1) * mesh).astype(int) % mesh) for x in q}
        allp = {tuple(np.round(np.mod(x, 1) * mesh).astype(int) % mesh) for x in full}
        assert kept | minus == allp
    from ase.build import bulk
    from phonjax.structure import Crystal
    m = default_mesh(Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03)))
    assert m[0] == m[1] == m[2] and 8 <= m[0] <= 14   # cubic: the same along every b_i


def test_predict_writes_thermal_with_the_bands_correction(tmp_path):
    """phonjax predict on the analytic rock-salt potential with Born data: summary.json's thermal block equals
    phonjax.thermal on the same force constants over the full mesh with the same long-range mode, and
    thermal.png is written."""
    import json
    from ase.build import bulk
    from phonjax.potentials import rock_salt_potential
    from phonjax.predict import predict

    born = Path(__file__).resolve().parents[1] / "examples" / "LiF" / "BORN"
    res = predict(bulk("LiF", "rocksalt", a=4.03), rock_salt_potential(4.03, "Li", "F"), 2, born=born,
                  npoints=5, out_dir=tmp_path, progress=False)
    assert res.lr == "recip-auto"
    s = json.loads((tmp_path / "summary.json").read_text())
    th = s["thermal"]
    mesh = tuple(th["mesh"])
    fc = res.force_constants
    full = thermal_properties(fc.frequencies(mesh_qpoints(mesh), lr=res.lr), th["T"], mesh=mesh)
    for key, arr in (("F", full.free_energy), ("S", full.entropy), ("Cv", full.heat_capacity)):
        np.testing.assert_allclose(th[key], arr, rtol=1e-6, atol=2e-6, err_msg=key)
    assert th["at_300K"]["Cv"] == pytest.approx(full.at(300.0)["Cv"], rel=1e-6)
    assert th["T"][0] == 0 and th["T"][-1] == 1000
    # physics, not numbers: C_V rises to the Dulong–Petit limit 3·n·k_B (n = 2 atoms), S grows with T
    from phonjax import units
    r = units.KB_EV_K * units.EV_TO_KJ_MOL * 1000
    assert 0 < th["Cv"][-1] <= 6 * r * (1 + 1e-9) and th["Cv"][-1] > 0.9 * 6 * r
    assert np.all(np.diff(th["S"][1:]) > 0)
    assert (tmp_path / "thermal.png").stat().st_size > 5_000
    assert "thermal.png" in s["files"]
