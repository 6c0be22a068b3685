"""Thermal properties (F, S, C_V) against phonopy's own, on the same force constants without NAC."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax.thermal import mesh_qpoints, thermal_properties

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
