"""Born charges / ε∞: readers (phonopy BORN variants, QE ph.x output and dyn file), symmetry expansion
against phonopy's parser, neutrality, validation errors. Runtime ≈ 3 s."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax.born import (Born, BornAtomCountError, DielectricError, NonNeutralChargesError, BornError,
                          expand_by_symmetry, independent_atoms)
from phonjax.io.born import read_born
from phonjax.structure import Crystal

ROOT = Path(__file__).resolve().parents[1]
QE_DIR = ROOT / "examples" / "LiF" / "dfpt" / "qe"


def _phonopy_atoms(x: Crystal):
    from phonopy.structure.atoms import PhonopyAtoms
    return PhonopyAtoms(cell=x.cell, scaled_positions=x.scaled_positions, numbers=x.numbers)


def _rutile():
    a, c, u = 4.594, 2.959, 0.3049
    frac = [[0, 0, 0], [.5, .5, .5], [u, u, 0], [-u, -u, 0], [.5 + u, .5 - u, .5], [.5 - u, .5 + u, .5]]
    cell = np.diag([a, a, c])
    return Crystal(cell, np.array(frac) @ cell, [22, 22, 8, 8, 8, 8])


def test_symmetry_expansion_matches_phonopy(tmp_path):
    """Rutile: 2 independent atoms with anisotropic, non-symmetric Z* expanded to 6 (rotated) tensors."""
    pytest.importorskip("phonopy")
    from phonopy.file_IO import parse_BORN
    x = _rutile()
    assert independent_atoms(x).tolist() == [0, 2]
    z_ti = np.array([[6.2, 0.9, 0.0], [0.9, 6.2, 0.0], [0.0, 0.0, 7.5]])
    z_o = np.array([[-3.1, -1.2, 0.0], [-1.2, -3.1, 0.0], [0.0, 0.0, -3.75]])  # neutral after expansion
    lines = ["14.4", " ".join(map(str, [6.3, 0, 0, 0, 6.3, 0, 0, 0, 7.8])),
             " ".join(map(str, z_ti.ravel())), " ".join(map(str, z_o.ravel()))]
    f = tmp_path / "BORN"
    f.write_text("\n".join(lines) + "\n")
    ref = parse_BORN(_phonopy_atoms(x), filename=str(f))
    b = read_born(f, x, enforce_neutrality=False)
    np.testing.assert_allclose(b.zstar, ref["born"], atol=1e-10)
    np.testing.assert_allclose(b.epsilon, ref["dielectric"])
    assert b.factor == 14.4
    # the expanded O tensors are genuinely different (rotated)
    assert np.abs(b.zstar[2] - b.zstar[4]).max() > 0.5
    np.testing.assert_allclose(expand_by_symmetry(x, [z_ti, z_o]), b.zstar)
    # --nosym layout (every atom listed) and a non-numeric unit line (default factor e²/4πε0)
    lines_all = ["# no unit", lines[1]] + [" ".join(map(str, zk.ravel())) for zk in b.zstar]
    f.write_text("\n".join(["default"] + lines_all[1:]) + "\n")
    b2 = read_born(f, x)
    np.testing.assert_allclose(b2.zstar, b.zstar, atol=1e-12)
    assert b2.factor == pytest.approx(14.399645)


def test_written_born_is_read_by_phonopy_for_equivalent_atoms(tmp_path):
    """phonjax writes BORN as phonopy does, the symmetry-independent atoms only (phonopy's parser refuses a file
    listing equivalent atoms): rutile's 6 atoms go out as 2 lines and come back, through phonopy and through
    phonjax, as the same 6 rotated tensors; the committed CaF2 DFPT BORN (2 F atoms alike) is read by phonopy."""
    pytest.importorskip("phonopy")
    from phonopy.file_IO import parse_BORN
    from phonjax.io.born import born_text, write_born
    x = _rutile()
    z = expand_by_symmetry(x, [np.array([[6.2, 0.9, 0.0], [0.9, 6.2, 0.0], [0.0, 0.0, 7.5]]),
                               np.array([[-3.1, -1.2, 0.0], [-1.2, -3.1, 0.0], [0.0, 0.0, -3.75]])])
    b = Born(z, np.diag([6.3, 6.3, 7.8]), 14.4)
    f = write_born(tmp_path / "BORN", b, x)
    assert len(f.read_text().splitlines()) == 2 + 2
    ref = parse_BORN(_phonopy_atoms(x), filename=str(f))
    np.testing.assert_allclose(ref["born"], z, atol=1e-7)
    np.testing.assert_allclose(read_born(f, x, enforce_neutrality=False).zstar, z, atol=1e-7)
    assert len(born_text(b.epsilon, b.zstar, b.factor).splitlines()) == 2 + 6  # without a crystal: every atom
    d = ROOT / "examples" / "CaF2" / "dfpt"
    if (d / "BORN").is_file():
        from phonjax.io.structure import read_structure
        caf2 = read_structure(d / "POSCAR")
        ref = parse_BORN(_phonopy_atoms(caf2), filename=str(d / "BORN"))
        np.testing.assert_allclose(ref["born"], read_born(d / "BORN", caf2).zstar, atol=1e-7)


def test_nacl_born_matches_phonopy(phonopy_examples):
    phonopy = pytest.importorskip("phonopy")
    d = phonopy_examples / "NaCl"
    ph = phonopy.load(d / "phonopy_disp.yaml", force_sets_filename=d / "FORCE_SETS", born_filename=d / "BORN",
                      produce_fc=False)
    b = read_born(d / "BORN", ph.primitive)
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon
    zb, eps = symmetrize_borns_and_epsilon(ph.nac_params["born"], ph.nac_params["dielectric"], ph.primitive)
    np.testing.assert_allclose(b.zstar, zb, atol=1e-12)
    assert b.neutrality_correction == pytest.approx((1.08703 - 1.08672) / 2)
    assert b.source.endswith("BORN")


def test_lif_nosym_born_mapped_from_unit_cell(phonopy_examples):
    phonopy = pytest.importorskip("phonopy")
    from phonopy import Phonopy
    from phonopy.interface.calculator import read_crystal_structure
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon
    from phonopy.file_IO import parse_BORN
    d = phonopy_examples / "LiF-nosym"
    unit, _ = read_crystal_structure(d / "POSCAR-unitcell")
    ph = Phonopy(unit, supercell_matrix=[1, 1, 1], primitive_matrix="F")
    with pytest.raises(BornAtomCountError):
        read_born(d / "BORN", ph.primitive)  # 8 Z* lines for a 2-atom cell and no unit cell given
    b = read_born(d / "BORN", ph.primitive, unitcell=unit)
    nac = parse_BORN(unit, filename=d / "BORN", is_symmetry=False)
    zb, eps = symmetrize_borns_and_epsilon(nac["born"], nac["dielectric"], unit, primitive=ph.primitive)
    np.testing.assert_allclose(b.zstar, zb, atol=1e-12)
    np.testing.assert_allclose(b.epsilon, eps, atol=1e-12)
    # reordered primitive (F first): charges follow the atoms
    p = Crystal.coerce(ph.primitive)
    swapped = Crystal(p.cell, p.positions[::-1], p.numbers[::-1])
    b2 = read_born(d / "BORN", swapped, unitcell=unit)
    np.testing.assert_allclose(b2.zstar, b.zstar[::-1])


@pytest.mark.skipif(not QE_DIR.is_dir(), reason="examples/LiF/dfpt/qe not present")
def test_qe_ph_output_and_dyn_file():
    cell = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]) * 2.031396945
    lif = Crystal(cell, [[0, 0, 0], [2.031396945] * 3], [3, 9])
    a = read_born(QE_DIR / "ph.out", lif)
    b = read_born(QE_DIR / "LiF.dyn1", lif)
    # values printed in the files: Z(Li) 1.05424, Z(F) −1.05337, ε 2.042917639 — neutrality spreads the sum
    np.testing.assert_allclose(a.zstar[:, 0, 0], [1.053805, -1.053805], atol=1e-6)
    np.testing.assert_allclose(b.zstar[:, 0, 0], [1.0538055, -1.0538055], atol=1e-6)
    np.testing.assert_allclose(a.epsilon, 2.042917639 * np.eye(3), atol=1e-9)
    np.testing.assert_allclose(b.epsilon, a.epsilon, atol=1e-8)
    assert a.neutrality_correction == pytest.approx((1.05424 - 1.05337) / 2, abs=1e-9)
    # atoms matched by position: the F-first crystal gets the charges swapped
    f_first = Crystal(cell, [[2.031396945] * 3, [0, 0, 0]], [9, 3])
    np.testing.assert_allclose(read_born(QE_DIR / "LiF.dyn1", f_first).zstar, b.zstar[::-1])
    np.testing.assert_allclose(read_born(QE_DIR / "ph.out", f_first).zstar, a.zstar[::-1])


def test_qe_synthetic_ph_output(tmp_path):
    """QE ≥ 6 layout (a block without and one with the ASR): rows are the field direction E (Z[k, E, u])."""
    text = """
     lattice parameter (alat)  =       7.0000  a.u.
     site n.  atom      mass           positions (alat units)
        1     Ga  69.7230   tau(    1) = (    0.00000    0.00000    0.00000  )
        2     As  74.9216   tau(    2) = (    0.25000    0.25000    0.25000  )

          Dielectric constant in cartesian axis

          (      12.000000000       0.100000000       0.000000000 )
          (       0.100000000      12.000000000       0.000000000 )
          (       0.000000000       0.000000000      11.000000000 )

          Effective charges (d Force / dE) in cartesian axis without acoustic sum rule applied (asr)

           atom      1 Ga      Mean Z*:        2.10000
      Ex  (        2.10000        0.30000        0.00000 )
      Ey  (        0.00000        2.10000        0.00000 )
      Ez  (        0.00000        0.00000        2.10000 )
           atom      2 As      Mean Z*:       -2.10000
      Ex  (       -2.10000       -0.30000        0.00000 )
      Ey  (        0.00000       -2.10000        0.00000 )
      Ez  (        0.00000        0.00000       -2.10000 )

          Effective charges (d Force / dE) in cartesian axis with asr applied:
           atom      1 Ga      Mean Z*:        2.05000
      E*x (        2.05000        0.30000        0.00000 )
      E*y (        0.00000        2.05000        0.00000 )
      E*z (        0.00000        0.00000        2.05000 )
           atom      2 As      Mean Z*:       -2.05000
      E*x (       -2.05000       -0.30000        0.00000 )
      E*y (        0.00000       -2.05000        0.00000 )
      E*z (        0.00000        0.00000       -2.05000 )

     Diagonalizing the dynamical matrix
"""
    f = tmp_path / "ph.out"
    f.write_text(text)
    alat = 7.0 * 0.529177210903
    x = Crystal(alat * np.array([[-.5, 0, .5], [0, .5, .5], [-.5, .5, 0]]), [[0, 0, 0], [alat / 4] * 3], [31, 33])
    b = read_born(f, x)
    assert b.zstar[0, 0, 0] == pytest.approx(2.05)  # the last block ("with asr applied") wins
    assert b.zstar[0, 0, 1] == pytest.approx(0.3) and b.zstar[0, 1, 0] == 0.0
    assert b.epsilon[0, 1] == pytest.approx(0.1)
    assert b.neutrality_correction == 0.0


def test_validation_errors(tmp_path):
    z = np.array([np.eye(3), -np.eye(3)])
    with pytest.raises(NonNeutralChargesError):
        Born(np.array([np.eye(3), -0.9 * np.eye(3)]), np.eye(3))  # constructor: must already be neutral
    with pytest.raises(NonNeutralChargesError):
        Born.from_arrays([np.eye(3), np.eye(3)], np.eye(3))  # far from neutral: error, not a correction
    b = Born.from_arrays(np.array([np.eye(3), -0.98 * np.eye(3)]), np.eye(3))
    assert b.neutrality_correction == pytest.approx(0.01)
    np.testing.assert_allclose(b.zstar.sum(0), 0, atol=1e-15)
    with pytest.raises(DielectricError):
        Born(z, np.diag([1.0, -1.0, 2.0]))
    with pytest.raises(DielectricError):
        Born(z, np.array([[2.0, 0.5, 0], [0.0, 2.0, 0], [0, 0, 2.0]]))
    with pytest.raises(BornError):
        Born(np.zeros((2, 3)), np.eye(3))
    with pytest.raises(ValueError):  # all Born errors are ValueErrors
        Born(z, np.eye(2))
    # wrong number of atoms in a BORN file
    x = Crystal(np.eye(3) * 4, [[0, 0, 0], [2, 2, 2], [2, 0, 0]], [11, 17, 8])
    f = tmp_path / "BORN"
    f.write_text("14.4\n1 0 0 0 1 0 0 0 1\n" + "1 0 0 0 1 0 0 0 1\n" * 2)
    with pytest.raises(BornAtomCountError):
        read_born(f, x)
    f.write_text("14.4\n1 0 0 0 1 0 0\n1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(BornError):
        read_born(f, x)
    with pytest.raises(BornError):
        read_born(tmp_path / "missing", x)
