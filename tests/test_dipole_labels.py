"""Dipole-subtracted labels (phonjax.longrange.dipole_labels, phonjax.train.short_range).

References: the Ewald supercell force constants (F = −Φ_dd u), finite differences of the dipole energy in
positions and in homogeneous strain (central, through the public function: sites and u strain with the cell),
the exact identity tr(σ_dd)·V = −E_dd (Φ_dd is homogeneous of degree −3 in length), and add-back == labels.
Small 2×2×2 LiF supercells; each Ewald sum compiles once (≈ 1 s), ≈ 60 s in all on a loaded 2-core machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax.born import Born, DielectricError, NonNeutralChargesError
from phonjax.io.born import read_born
from phonjax.longrange.dipole_labels import (DipoleLabelError, dipole_labels, infer_supercell_matrix,
                                             strained_primitive)
from phonjax.longrange.supercell import ewald_supercell_fc
from phonjax.io.structure import read_structure as load_structure
from phonjax.structure import make_supercell

ROOT = Path(__file__).resolve().parents[1]
LIF = ROOT / "examples" / "LiF"


@pytest.fixture(scope="module")
def lif():
    prim = load_structure(LIF / "POSCAR")
    return prim, read_born(LIF / "BORN", prim)


def _frame(prim, n=2, seed=0, amp=0.08, strain=0.01):
    rng = np.random.default_rng(seed)
    sc = make_supercell(prim, n).crystal
    eps = rng.normal(scale=strain, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    cell = sc.cell @ (np.eye(3) + eps)
    pos = sc.scaled_positions @ cell + rng.normal(scale=amp, size=(sc.n_atoms, 3))
    return pos, sc.numbers.copy(), cell


@pytest.fixture(scope="module")
def frame(lif):
    return _frame(lif[0])


@pytest.fixture(scope="module")
def labels(lif, frame):
    prim, born = lif
    return dipole_labels(*frame, prim, born, 2)


def test_forces_are_minus_phi_u_and_minus_grad_energy(lif, frame, labels):
    prim, born = lif
    pos, num, cell = frame
    M = np.eye(3, dtype=int) * 2
    D = np.linalg.solve(M @ prim.cell, cell)
    sc = make_supercell(strained_primitive(prim, D), M)
    assert np.allclose(sc.crystal.cell, cell, atol=1e-12)
    phi = ewald_supercell_fc(sc, born)
    u = pos - sc.crystal.positions  # small rattle: no wrapping needed here
    assert np.allclose(labels.displacements, u, atol=1e-12)
    f_ref = -np.einsum("stab,tb->sa", phi, u)
    assert np.abs(labels.forces - f_ref).max() < 1e-10
    assert abs(labels.energy - 0.5 * np.einsum("sa,stab,tb->", u, phi, u)) < 1e-10
    assert np.abs(labels.forces).max() > 0.05  # a non-trivial check
    # −dE/dx by central differences of the public function (re-mapping atoms, same cell)
    h = 1e-4
    for atom, comp in ((0, 0), (5, 2)):
        e = []
        for s in (+1, -1):
            p = pos.copy()
            p[atom, comp] += s * h
            e.append(dipole_labels(p, num, cell, prim, born, 2, stress=False).energy)
        assert abs(-(e[0] - e[1]) / (2 * h) - labels.forces[atom, comp]) < 1e-7


def test_stress_is_strain_derivative(lif, frame, labels):
    prim, born = lif
    pos, num, cell = frame
    vol = abs(np.linalg.det(cell))
    s = labels.stress
    assert np.allclose(s, s.T)
    # exact identity: Φ_dd ∝ length⁻³, u ∝ length → E(λ) = E/λ → V·tr σ = −E
    assert abs(vol * np.trace(s) + labels.energy) < 1e-4 * abs(labels.energy) + 1e-9
    # central differences of E(positions·(1+ε), cell·(1+ε)) through the public function
    h = 1e-4
    for a, b in ((0, 0), (0, 1)):
        e = []
        for sign in (+1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * h
            d = np.eye(3) + eps
            e.append(dipole_labels(pos @ d, num, cell @ d, prim, born, 2, stress=False).energy)
        ref = (e[0] - e[1]) / (2 * h) / vol / (1.0 if a == b else 2.0)
        assert abs(s[a, b] - ref) < 1e-3 * np.abs(s).max()


def test_atom_order_and_supercell_inference(lif, frame, labels):
    prim, born = lif
    pos, num, cell = frame
    perm = np.random.default_rng(3).permutation(len(num))
    lp = dipole_labels(pos[perm], num[perm], cell, prim, born, None, stress=False)
    assert np.array_equal(lp.supercell_matrix, np.eye(3) * 2)
    assert abs(lp.energy - labels.energy) < 1e-12
    assert np.abs(lp.forces - labels.forces[perm]).max() < 1e-12
    # a conventional cubic cell is a non-diagonal supercell of the fcc primitive
    conv = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    assert np.array_equal(infer_supercell_matrix(prim, conv @ prim.cell * 1.01), conv)


def test_bad_input(lif, frame):
    prim, born = lif
    pos, num, cell = frame
    with pytest.raises(DipoleLabelError, match="14 atoms, the reference supercell has 16"):
        dipole_labels(pos[:14], num[:14], cell, prim, born, 2)
    with pytest.raises(DipoleLabelError, match="not a supercell|not the supercell"):
        dipole_labels(pos, num, cell * 1.3, prim, born, 2)
    bad = num.copy()
    bad[0] = bad[1]
    with pytest.raises(DipoleLabelError, match="composition"):
        dipole_labels(pos, bad, cell, prim, born, 2)
    far = pos.copy()
    far[3] += [0.9, 0.0, 0.0]
    with pytest.raises(DipoleLabelError, match="too large"):
        dipole_labels(far, num, cell, prim, born, 2)
    with pytest.raises(ValueError, match="Born charges for 1 atoms"):
        dipole_labels(pos, num, cell, prim, Born(np.zeros((1, 3, 3)), np.eye(3)), 2)
    with pytest.raises(NonNeutralChargesError):
        Born(np.stack([np.eye(3), np.eye(3)]), np.eye(3))
    with pytest.raises(DielectricError):
        Born(np.stack([np.eye(3), -np.eye(3)]), -np.eye(3))


def test_dataset_subtract_add_back_cache_and_fc_reference(lif, frame, labels, tmp_path, monkeypatch):
    from phonjax.train.data import Dataset, DatasetError, Frame
    from phonjax.train.fc_loss import FcReference
    from phonjax.train.short_range import (ShortRangeSetup, add_back, dipole_parts, label_rms, subtract,
                                           subtract_fc_reference)
    prim, born = lif
    pos, num, cell = frame
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    frames = (Frame(num, pos, cell, -123.4, rng.normal(size=pos.shape), rng.normal(size=(3, 3)) * 1e-2, "a#0"),
              Frame(num, pos, cell, -120.0, rng.normal(size=pos.shape), None, "a#1"))
    ds = Dataset(frames, {"Li": -1.0})
    setup = ShortRangeSetup(prim, born, np.eye(3, dtype=int) * 2, stress=True)
    logs = []
    parts = dipole_parts(frames, setup, log=logs.append)
    assert parts[0].stress is not None and parts[1].stress is None  # no stress label → no σ_dd
    assert abs(parts[0].energy - labels.energy) < 1e-12 and np.abs(parts[0].stress - labels.stress).max() < 1e-12
    again = dipole_parts(frames, setup, log=logs.append)
    assert "read from" in logs[-1]
    assert all(abs(a.energy - b.energy) < 1e-15 and np.array_equal(a.forces, b.forces) for a, b in zip(parts, again))
    sr = subtract(ds, parts)
    assert abs(sr.frames[0].energy - (frames[0].energy - labels.energy)) < 1e-12
    assert np.allclose(sr.frames[0].forces, frames[0].forces - labels.forces, atol=1e-14)
    back = add_back(sr, parts)
    for f0, f1 in zip(frames, back.frames):
        assert abs(f1.energy - f0.energy) < 1e-12
        assert np.abs(f1.forces - f0.forces).max() < 1e-14
        assert (f0.stress is None and f1.stress is None) or np.abs(f1.stress - f0.stress).max() < 1e-15
    r = label_rms(ds, parts)
    assert r["forces"] > 0.01 and np.isfinite(r["stress"])
    # force-constant reference rows, atoms in another order: minus the Φ_dd rows of that cell
    perm = np.random.default_rng(2).permutation(len(num))
    fc = rng.normal(size=(2, len(num), 3, 3))
    ref = FcReference(num[perm], pos[perm], cell, np.array([0, 1]), fc, "fc")
    phi = ewald_supercell_fc(make_supercell(strained_primitive(prim, np.linalg.solve(2 * prim.cell, cell)), 2), born)
    out = subtract_fc_reference(ref, ShortRangeSetup(prim, born, None))
    assert np.abs(out.fc - (fc - phi[np.ix_(perm[:2], perm)])).max() < 1e-10
    with pytest.raises(DatasetError, match="a#0: dipole labels"):
        dipole_parts((Frame(num[:4], pos[:4], cell, 0.0, pos[:4], None, "a#0"),), setup)
