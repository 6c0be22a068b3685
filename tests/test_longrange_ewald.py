"""Ewald dipole–dipole kernels: phonopy parity of the reciprocal sum, Λ-independence of the full sum,
large-Λ limit, non-analytic limit, sum rules, supercell force constants. Runtime ≈ 25 s."""
from __future__ import annotations

import numpy as np
import pytest

from phonjax.born import Born
from phonjax.structure import Crystal, make_supercell, commensurate_qpoints
from phonjax.longrange.ewald import (dipole_dipole, ewald_parameters, make_dipole_kernel, phonopy_recip_parameters,
                                     default_lambda, QDirectionError)
from phonjax.longrange.gonze import supercell_dipole_fc
from phonjax.longrange.nac import na_term


def _triclinic():
    """A low-symmetry 3-atom crystal with anisotropic ε and neutral, non-symmetric Z*."""
    cell = np.array([[4.1, 0.2, -0.1], [0.7, 3.8, 0.3], [-0.4, 0.5, 4.6]])
    frac = np.array([[0.0, 0.0, 0.0], [0.31, 0.52, 0.44], [0.62, 0.13, 0.81]])
    xtal = Crystal(cell, frac @ cell, [3, 9, 8])
    rng = np.random.default_rng(3)
    z = rng.normal(0, 0.4, (3, 3, 3)) + np.array([1.3, -0.6, -0.7])[:, None, None] * np.eye(3)
    A = rng.normal(0, 0.3, (3, 3))
    eps = np.diag([2.2, 3.1, 4.0]) + A @ A.T
    return xtal, Born.from_arrays(z, eps, max_correction=1.0)


def _rocksalt():
    a = 5.69
    cell = 0.5 * a * (np.ones((3, 3)) - np.eye(3))
    xtal = Crystal(cell, [[0, 0, 0], [a / 2, 0, 0]], [11, 17])
    return xtal, Born.from_arrays([1.087 * np.eye(3), -1.087 * np.eye(3)], 2.435 * np.eye(3))


QS = np.array([[0.1, 0.2, -0.3], [0.5, 0.5, 0.5], [0.37, -0.11, 0.05], [0.01, 0.0, 0.02]])


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("make", [_rocksalt, _triclinic])
def test_full_ewald_lambda_independent(make):
    xtal, born = make()
    lam0 = default_lambda(xtal)
    ref = dipole_dipole(QS, xtal, born, lam=lam0)
    for f in (0.5, 2.0):  # a factor-4 range (Λ_G d_min from ~1 to ~8 on these cells)
        c = dipole_dipole(QS, xtal, born, lam=f * lam0)
        assert _rel(c, ref) < 1e-8, f


@pytest.mark.parametrize("make", [_rocksalt, _triclinic])
def test_full_ewald_equals_reciprocal_sum_at_large_lambda(make):
    """With Λ so large that erfc(Λ_G d_min) < 1e-16, the real-space part vanishes and a converged reciprocal
    sum (huge G sphere) must equal the recip+real+limit split at an ordinary Λ."""
    xtal, born = make()
    d = xtal.positions[:, None] - xtal.positions[None] + np.array(
        np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij")).reshape(3, -1).T[:, None, None, :] @ xtal.cell
    dmin = np.linalg.norm(d, axis=-1)
    dmin = dmin[dmin > 1e-8].min() / np.sqrt(np.linalg.eigvalsh(born.epsilon).max())
    lam_big = 6.5 / dmin / (2 * np.pi)
    recip = dipole_dipole(QS, xtal, born, lam=lam_big, with_real_space=False, tolerance=1e-15)
    full = dipole_dipole(QS, xtal, born, lam=default_lambda(xtal))
    assert _rel(recip, full) < 1e-9


def test_recip_matches_phonopy_internals():
    phonopy = pytest.importorskip("phonopy")
    from phonopy.structure.atoms import PhonopyAtoms
    from phonopy.harmonic.dynamical_matrix import DynamicalMatrixGL
    xtal, born = _triclinic()
    ph = phonopy.Phonopy(PhonopyAtoms(cell=xtal.cell, scaled_positions=xtal.scaled_positions, numbers=xtal.numbers),
                         supercell_matrix=np.eye(3, dtype=int), primitive_matrix=np.eye(3))
    fc = np.zeros((3, 3, 3, 3))
    dm = DynamicalMatrixGL(ph.supercell, ph.primitive, fc, nac_params=born.to_phonopy_nac_params())
    dm.make_Gonze_nac_dataset()
    kern = make_dipole_kernel(xtal, born, phonopy_recip_parameters(xtal, born))
    m = np.repeat(ph.primitive.masses, 3)
    mm = np.sqrt(np.outer(m, m))
    rec = np.linalg.inv(xtal.cell)
    qs = np.array([[0.1, 0.2, -0.3], [0.3, 0.1, 0.05], [0, 0, 0]])
    ours = kern(qs, fold=False).reshape(3, 9, 9)
    for q, c in zip(qs, ours):
        ref = dm._get_Gonze_dipole_dipole(q, None) * mm
        assert np.abs(c - ref).max() < 1e-10 * np.abs(ref).max()
    qdir = np.array([0.2, -0.5, 0.4])  # reduced, as phonopy
    ref = dm._get_Gonze_dipole_dipole(np.zeros(3), qdir) * mm
    c = kern(np.zeros((1, 3)), rec @ qdir).reshape(9, 9)
    assert np.abs(c - ref).max() < 1e-10 * np.abs(ref).max()


@pytest.mark.parametrize("with_real", [True, False])
def test_sum_rules_hermiticity_and_na_limit(with_real):
    xtal, born = _triclinic()
    n = xtal.n_atoms
    c0 = dipole_dipole(np.zeros((1, 3)), xtal, born, with_real_space=with_real)[0]
    # acoustic sum rule at Γ: the q = 0 subtraction uses the Hermitian part of M_i = Σ_k C(0)[i, :, k, :]
    # (as phonopy), so Σ_k C(0) = (M_i − M_iᵀ)/2: zero for symmetric Z* (rock salt, below), and only its
    # antisymmetric part survives for this random non-symmetric Z*.
    s0 = c0.sum(axis=2)
    assert np.abs(s0 + np.swapaxes(s0, 1, 2)).max() < 1e-10
    rs, rb = _rocksalt()
    assert np.abs(dipole_dipole(np.zeros((1, 3)), rs, rb, with_real_space=with_real)[0].sum(axis=2)).max() < 1e-10
    qhat = np.array([0.3, -0.4, 0.8])
    c0d = dipole_dipole(np.zeros((1, 3)), xtal, born, with_real_space=with_real, q_direction=qhat)[0]
    # Z* neutrality: the NA term adds nothing to the sums
    np.testing.assert_allclose(c0d.sum(axis=2), s0, atol=1e-10)
    np.testing.assert_allclose(c0d - c0, na_term(qhat, born, xtal.volume), atol=1e-12)
    # C(t q̂) → C(0; q̂) as t → 0 (q̂ Cartesian → reduced q = t q̂ @ cell.T)
    qs = np.array([t * qhat @ xtal.cell.T for t in (1e-3, 1e-4)])
    c = dipole_dipole(qs, xtal, born, with_real_space=with_real)
    e1, e2 = np.abs(c[0] - c0d).max(), np.abs(c[1] - c0d).max()
    assert e2 < 1e-3 * np.abs(c0d).max() and e2 < 0.2 * e1  # linear approach
    # Hermitian, C(−q) = C(q)*
    cq = dipole_dipole(np.vstack([QS, -QS]), xtal, born, with_real_space=with_real)
    h = cq[:4].reshape(4, 3 * n, 3 * n)
    np.testing.assert_allclose(h, np.conj(np.swapaxes(h, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(cq[4:], np.conj(cq[:4]), atol=1e-12)


def test_supercell_fc_equals_supercell_ewald():
    """The supercell dipole force constants from commensurate q equal an independent Ewald sum that treats
    the whole supercell as the crystal (its own G lattice and real-space images), at q = 0."""
    xtal, born = _rocksalt()
    sc = make_supercell(xtal, [[2, 0, 0], [0, 2, 1], [0, 0, 2]])
    kern = make_dipole_kernel(xtal, born, ewald_parameters(xtal, born))
    fc = supercell_dipole_fc(sc, kern)
    zs = np.tile(born.zstar, (sc.n_cells, 1, 1))
    big = Born(zs, born.epsilon, factor=born.factor)
    cs = dipole_dipole(np.zeros((1, 3)), sc.crystal, big)[0]  # (ns, 3, ns, 3), real at q = 0
    ref = np.transpose(cs[:xtal.n_atoms].real, (0, 2, 1, 3))  # [i, s, a, b]
    assert np.abs(fc - ref).max() < 1e-9 * np.abs(ref).max()
    # and commensurate Fourier components reproduce C_dd
    assert len(commensurate_qpoints(sc.matrix)) == sc.n_cells


def test_zero_q_direction_is_an_error():
    xtal, born = _rocksalt()
    with pytest.raises(QDirectionError):
        dipole_dipole(np.zeros((1, 3)), xtal, born, q_direction=[0, 0, 0])
    with pytest.raises(ValueError):
        dipole_dipole(np.zeros((1, 3)), xtal, born, lam=-1.0)


def test_supercell_dipole_energy_forces():
    import jax
    from phonjax.longrange.supercell import ewald_supercell_fc, dipole_energy_forces
    xtal, born = _triclinic()
    sc = make_supercell(xtal, 2)
    phi = ewald_supercell_fc(sc, born)
    ns = sc.crystal.n_atoms
    np.testing.assert_allclose(phi, np.transpose(phi, (1, 0, 3, 2)), atol=1e-10)  # Φ_st = Φ_tsᵀ
    rows = ewald_supercell_fc(sc, born, full=False, lam=0.7 * default_lambda(xtal))  # Λ-independent
    np.testing.assert_allclose(phi[:xtal.n_atoms], rows, atol=1e-9)
    u = np.random.default_rng(0).normal(0, 0.02, (ns, 3))
    e, f = dipole_energy_forces(u, phi)
    g = jax.grad(lambda x: dipole_energy_forces(x, phi)[0])(u)
    np.testing.assert_allclose(-np.asarray(g), f, atol=1e-12)


def test_kernel_compiles_once_per_bucket():
    """One compiled C_dd kernel per shape: q lists in one bucket, with or without a direction, and a second
    kernel for other Born data (same atoms and G list) reuse it."""
    from phonjax.longrange import ewald as E

    xtal, born = _rocksalt()
    kern = make_dipole_kernel(xtal, born, phonopy_recip_parameters(xtal, born))
    kern(QS[:1])
    n0 = E._cdd_batch._cache_size()
    for m in (2, 3, 5):  # ≤ 8 representatives (L has 2 zone-boundary ties): all in the first bucket
        kern(np.vstack([QS, QS])[:m], [1.0, 0, 0])
    other = Born.from_arrays([1.3 * np.eye(3), -1.3 * np.eye(3)], 3.1 * np.eye(3))
    make_dipole_kernel(xtal, other, phonopy_recip_parameters(xtal, other))(QS[:3])
    assert E._cdd_batch._cache_size() == n0
