"""Frequencies vs phonopy finite displacements (same analytic potential through an ASE calculator), ASR at Γ,
hermiticity, invariance to the cell origin and atom order, units."""
import numpy as np
import pytest
from test_force_constants import low_symmetry  # the shared P1 test cell
from ase.build import bulk

import phonjax  # noqa: F401
from phonjax import units
from phonjax.dynmat import DynmatError
from phonjax.force_constants import force_constants
from phonjax.potentials import PotentialCalculator, rock_salt_potential
from phonjax.structure import Crystal

POT = rock_salt_potential(5.64, "Na", "Cl")


def phonopy_fd_frequencies(atoms, M, q, distance=0.003):
    """phonopy's finite-displacement frequencies with the same potential (ASE calculator)."""
    phonopy = pytest.importorskip("phonopy")
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(numbers=atoms.numbers, cell=atoms.cell.array, scaled_positions=atoms.get_scaled_positions(),
                        masses=atoms.get_masses())
    ph = phonopy.Phonopy(unit, supercell_matrix=np.asarray(M).T, primitive_matrix=np.eye(3), log_level=0)
    ph.generate_displacements(distance=distance, is_plusminus=True)
    calc = PotentialCalculator(POT)
    forces = []
    import ase
    for sc in ph.supercells_with_displacements:
        a = ase.Atoms(numbers=sc.numbers, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.run_qpoints(q)
    return ph.qpoints.frequencies


@pytest.mark.parametrize("kind", ["rocksalt", "P1"])
def test_frequencies_match_phonopy_finite_displacements(kind):
    if kind == "rocksalt":
        at, M = bulk("NaCl", "rocksalt", a=5.64), 3 * np.eye(3, dtype=int)
    else:
        at, M = low_symmetry(), np.array([[1, 0, 0], [0, 2, 0], [0, 0, 2]])
    fc = force_constants(POT, at, M)
    bs = fc.band_structure(npoints=11, lr="none")
    ref = phonopy_fd_frequencies(at, M, bs.qpoints)
    assert np.abs(bs.frequencies - ref).max() <= 1e-3
    assert np.abs(ref).max() > 1.0  # nontrivial dispersion


def test_acoustic_zero_hermitian_and_units():
    at = low_symmetry()
    fc = force_constants(POT, at, 2, asr=None, symmetrize=False)
    # perturb the force constants so that ASR is visibly broken before the q-space correction
    rng = np.random.default_rng(0)
    broken = type(fc)(fc.supercell, fc.fc + 0.02 * rng.standard_normal(fc.fc.shape))
    f_raw = broken.frequencies([[0, 0, 0]], asr=False)[0]
    assert np.sort(np.abs(f_raw))[:3].max() > 1e-2
    f = broken.frequencies([[0, 0, 0]], asr=True)[0]
    assert np.sort(np.abs(f))[:3].max() <= 1e-6  # the three rigid translations
    assert np.sort(np.abs(f))[3] > 0.1
    D = broken.dynamical_matrices(np.random.default_rng(1).uniform(-1, 1, (7, 3)))
    assert np.abs(D - np.conj(np.swapaxes(D, 1, 2))).max() < 1e-14 * np.abs(D).max()
    q = np.random.default_rng(2).uniform(-1, 1, (5, 3))
    thz = fc.frequencies(q)
    assert np.allclose(fc.frequencies(q, unit="cm-1"), thz * units.THZ_TO_CM1)
    assert np.allclose(fc.frequencies(q, unit="meV"), thz * units.THZ_TO_MEV)
    # eigenvectors: orthonormal, and D v = ω² v
    f2, v = fc.frequencies(q, return_eigenvectors=True)
    assert np.allclose(f2, thz)
    Dq = fc.dynamical_matrices(q)
    lam = np.sign(thz) * (thz / units.VASP_TO_THZ) ** 2
    assert np.abs(Dq @ v - v * lam[:, None, :]).max() < 1e-10
    with pytest.raises(DynmatError):
        fc.frequencies(q, unit="Hz")
    with pytest.raises(DynmatError):
        fc.frequencies(np.zeros((3, 2)))
    with pytest.raises(DynmatError, match="Born"):
        fc.frequencies(q, lr="gonze")


def test_invariance_origin_and_atom_order():
    at = low_symmetry()
    q = np.random.default_rng(4).uniform(-1, 1, (20, 3))
    f0 = force_constants(POT, at, 2).frequencies(q)
    shifted = at.copy()
    shifted.positions += np.array([0.7, -1.3, 2.1])
    f1 = force_constants(POT, shifted, 2).frequencies(q)
    perm = [2, 0, 3, 1]
    reordered = at[perm]
    f2 = force_constants(POT, reordered, 2).frequencies(q)
    wrapped = at.copy()
    wrapped.positions += at.cell.array[0] - 2 * at.cell.array[2]  # another choice of atom images
    f3 = force_constants(POT, wrapped, 2).frequencies(q)
    for f in (f1, f2, f3):
        assert np.abs(f - f0).max() < 1e-8


def test_general_supercell_matrix_interpolates_commensurate_q():
    """A non-diagonal supercell: at its commensurate q the frequencies equal those of a large supercell's
    (the pair potential's range is shorter than both supercells' half widths, so both are exact)."""
    from phonjax.structure import commensurate_qpoints
    pot = rock_salt_potential(5.64, "Na", "Cl", cutoff=4.5)
    at = bulk("NaCl", "rocksalt", a=5.64)
    M = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) * 2  # conventional 2×2×2
    q = commensurate_qpoints(M)
    fa = force_constants(pot, at, M).frequencies(q)
    fb = force_constants(pot, at, 4).frequencies(q)
    assert np.abs(fa - fb).max() < 1e-6
    assert Crystal.from_ase(at).n_atoms == 2
