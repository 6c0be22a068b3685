"""DFPT reference: the pipeline for real on a tiny LiF case (30 Ry, 2×2×2 k, Γ-only ph.x with epsil, q2r,
matdyn), and the committed examples/LiF reference checked against physics (LO–TO splitting from ε∞ and Z*)
and phonopy's own BORN parser.

Runtime ~15 s with QE (one scf + Γ ph.x at 1 MPI rank); the committed-reference checks take < 1 s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax import units
from phonjax.compare import gamma_indices
from phonjax.io.band_yaml import read_band_yaml

from dataset_helpers import lif_primitive, require_qe, tiny_dfpt

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "examples" / "LiF"


def lo_from_to(to_thz: float, eps: float, z: float, volume: float, masses) -> float:
    """Rigid-ion LO frequency of a cubic diatomic crystal: λ_LO = λ_TO + 4π e² Z²/(Ω ε∞) (1/m1 + 1/m2)."""
    lam_to = (to_thz / units.VASP_TO_THZ) ** 2
    lam_na = 4 * np.pi * units.COULOMB_EV_A * z**2 / (volume * eps) * (1 / masses[0] + 1 / masses[1])
    return float(np.sqrt(lam_to + lam_na) * units.VASP_TO_THZ)


def _read_born(path: Path):
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    eps = np.array(rows[1], float).reshape(3, 3)
    z = np.array(rows[2:], float).reshape(-1, 3, 3)
    return eps, z


@pytest.mark.qe
def test_run_dfpt_tiny(tmp_path):
    require_qe("pw.x", "ph.x", "q2r.x", "matdyn.x")
    from phonjax.dataset import run_dfpt
    from phonjax.io.qe import parse_dyn_dielectric

    cfg = tiny_dfpt((1, 1, 1))
    crystal = lif_primitive(4.0)
    res = run_dfpt(crystal, cfg, tmp_path)
    for name in ("BORN", "band.yaml", "POSCAR", "dfpt.json", "t.fc"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "qe" / "tmp").exists()  # scratch removed
    # ε∞ and Z*: the BORN file equals what ph.x wrote in its dynamical matrix, neutrality imposed
    eps_dyn, z_dyn = parse_dyn_dielectric((tmp_path / "qe" / "t.dyn1").read_text())
    eps, z = _read_born(tmp_path / "BORN")
    np.testing.assert_allclose(eps, eps_dyn, atol=1e-7)
    np.testing.assert_allclose(z, z_dyn - z_dyn.mean(axis=0), atol=1e-7)
    assert 1.5 < eps[0, 0] < 4.0 and 0.8 < z[0, 0, 0] < 1.6 and np.allclose(z.sum(axis=0), 0, atol=1e-7)
    # band.yaml: readable, phonopy layout, acoustic zero at Γ, LO−TO splitting consistent with ε∞ and Z*
    band = read_band_yaml(tmp_path / "band.yaml")
    assert band.frequencies.shape == (24, 6) and sum(band.segment_nqpoint) == 24
    g = gamma_indices(band.qpoints)
    assert len(g) >= 2
    f = np.sort(band.frequencies[g[0]])
    np.testing.assert_allclose(f[:3], 0, atol=0.05)
    to, lo = f[3], f[5]
    assert lo == pytest.approx(lo_from_to(to, eps[0, 0], z[0, 0, 0], crystal.volume, crystal.masses), rel=2e-3)
    assert res.timings["ph"] > 0


def test_committed_reference_is_consistent():
    """examples/LiF: band.yaml + BORN from the PBE 4×4×4 DFPT run are mutually consistent and readable."""
    if not (REF / "dfpt" / "band.yaml").is_file():
        pytest.skip("examples/LiF/dfpt/band.yaml not present")
    from ase.io import read
    band = read_band_yaml(REF / "dfpt" / "band.yaml")
    eps, z = _read_born(REF / "BORN")
    atoms = read(str(REF / "POSCAR"))
    assert band.frequencies.shape[1] == 6 and 100 <= len(band.qpoints) <= 160
    np.testing.assert_allclose(band.lattice, atoms.cell.array, atol=1e-6)
    g = gamma_indices(band.qpoints)
    f = np.sort(band.frequencies[g], axis=1)
    np.testing.assert_allclose(f[:, :3], 0, atol=0.02)
    to, lo = f[0, 3], f[0, 5]
    assert 7.5 < to < 9.0 and 17.5 < lo < 19.5  # PBE LiF: TO ~8.3, LO ~18.7 THz (exp. 9.2 / 19.8)
    assert lo == pytest.approx(lo_from_to(to, eps[0, 0], z[0, 0, 0], atoms.get_volume(), atoms.get_masses()),
                               rel=2e-3)
    # phonopy's own BORN parser agrees (both atoms are symmetry-independent in rock salt)
    pytest.importorskip("phonopy")
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.atoms import PhonopyAtoms
    prim = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    nac = parse_BORN(prim, filename=str(REF / "BORN"))
    np.testing.assert_allclose(nac["dielectric"], eps, atol=1e-6)
    np.testing.assert_allclose(nac["born"], z, atol=1e-6)
