"""Mesh reductions (phonjax.qmesh) against spglib's irreducible mesh, and the reduced thermal sums against the
whole mesh on phonopy's NaCl example (force constants with the crystal's symmetry, with and without NAC)."""
from pathlib import Path

import numpy as np
import pytest

from phonjax.io.structure import read_structure
from phonjax.qmesh import irreducible_mesh, mesh_qpoints, time_reversal_mesh

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "phonopy-examples"


@pytest.mark.parametrize("name, mesh", [("LiF", (20, 20, 20)), ("AlN", (6, 6, 4)), ("SiC", (8, 8, 8)),
                                        ("KMgF3", (4, 4, 4)), ("CaF2", (5, 5, 5))])
def test_orbits_match_spglib(name, mesh):
    spglib = pytest.importorskip("spglib")
    c = read_structure(ROOT / "examples" / name / "POSCAR")
    q, w = irreducible_mesh(mesh, c)
    frac = c.positions @ np.linalg.inv(c.cell)
    mapping, _ = spglib.get_ir_reciprocal_mesh(mesh, (c.cell, frac, c.numbers), is_shift=[0, 0, 0])
    _, counts = np.unique(mapping, return_counts=True)
    assert len(q) == len(counts) and sorted(w.astype(int)) == sorted(counts)
    assert w.sum() == np.prod(mesh)
    full = {tuple(np.round(x * mesh).astype(int) % mesh) for x in mesh_qpoints(mesh)}
    assert {tuple(np.round(x * mesh).astype(int) % mesh) for x in q} <= full
    assert np.all(q > -0.5 - 1e-12) and np.all(q <= 0.5 + 1e-12)


def test_mesh_that_breaks_the_symmetry_and_time_reversal():
    c = read_structure(ROOT / "examples" / "LiF" / "POSCAR")
    q, w = irreducible_mesh((4, 4, 3), c)          # a cubic crystal on a non-cubic mesh: fewer rotations apply
    assert w.sum() == 48 and len(q) > len(irreducible_mesh((4, 4, 4), c)[0]) * 48 / 64
    qt, wt = time_reversal_mesh((3, 4, 5))
    assert wt.sum() == 60 and len(qt) == (60 + 2) // 2   # Γ and the one other self-inverse point (0, ½, 0)


@pytest.mark.parametrize("lr", ["none", "gonze"])
def test_reduced_thermal_equals_the_whole_mesh(lr):
    pytest.importorskip("phonopy")
    if not (EXAMPLES / "NaCl").is_dir():
        pytest.skip("phonopy examples not present")
    from phonopy_data import load_example
    from phonjax.io.phonopy import from_phonopy
    from phonjax.thermal import mesh_thermal

    ph, *_ = load_example(EXAMPLES / "NaCl")
    fc = from_phonopy(ph, is_nac=lr != "none")
    from phonjax.longrange.spec import LongRange
    corr = LongRange(lr).correction(fc)
    temps = np.array([10.0, 300.0, 1000.0])
    sym = mesh_thermal(fc, corr, (10, 10, 10), temps)
    whole = mesh_thermal(fc, corr, (10, 10, 10), temps, symmetry=False)
    for key in ("free_energy", "entropy", "heat_capacity"):
        np.testing.assert_allclose(getattr(sym, key), getattr(whole, key), rtol=1e-9, err_msg=key)
    assert sym.n_excluded == whole.n_excluded == 3
