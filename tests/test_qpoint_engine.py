"""The q-point engine's fast paths give the same numbers as the plain definitions: the Fourier transform with R
and −R taken together against the direct sum over Wigner–Seitz images, the CPU pipeline of ``dynmat.phonons``
against one pass, the zone-boundary search's fast path against its tie table, and phonopy's DynamicalMatrixGL
on the same q-points."""
from __future__ import annotations

import numpy as np
import pytest
from test_force_constants import low_symmetry  # the shared P1 test cell

import phonjax  # noqa: F401
from phonjax import dynmat
from phonjax.fourier import fourier_fc, ws_images
from phonjax.longrange.ewald import _SHIFTS, bz_representatives
from phonjax.structure import Crystal, make_supercell


def test_fourier_equals_the_direct_image_sum():
    """Random, non-symmetric force constants (F_−R unrelated to F_R) in a P1 2×2×1 supercell: C(q) from the
    half-lattice kernel equals Σ_s Σ_m w · fc[i, s] · exp(2πi q·(r_s + T_m − r_i)) to 1e-12."""
    prim = Crystal.from_ase(low_symmetry())
    sc = make_supercell(prim, np.diag([2, 2, 1]))
    n, ns = prim.n_atoms, sc.crystal.n_atoms
    fc = np.random.default_rng(1).standard_normal((n, ns, 3, 3))
    q = np.concatenate([np.random.default_rng(2).uniform(-1, 1, (37, 3)), [[0, 0, 0], [0.5, 0.5, 0.5]]])
    im = ws_images(sc)
    ph = np.exp(2j * np.pi * np.einsum("qc,ismc->qism", q, im.frac)) * im.weight[None]
    direct = np.zeros((len(q), n, 3, n, 3), dtype=complex)
    for s in range(ns):
        direct[:, :, :, sc.s2p[s], :] += np.einsum("qim,iab->qiab", ph[:, :, s], fc[:, s])
    got = fourier_fc(fc, sc, q, images=im)
    assert np.abs(got - direct).max() <= 1e-12 * np.abs(direct).max()
    assert np.abs(direct).max() > 1.0


def test_zone_boundary_search_fast_path_equals_tie_table():
    """Without boundary points the fast path returns exactly what the full tie table gives; with them every
    tied representative is listed (owner ascending)."""
    cell = np.array([[0.0, 2.8, 2.8], [2.8, 0.0, 2.8], [2.8, 2.8, 0.0]])
    rec_t = np.linalg.inv(cell).T

    def brute(q):
        base = np.floor(q + 1e-12)
        norm = np.linalg.norm(((q - base)[:, None, :] + _SHIFTS[None]) @ rec_t, axis=-1)
        owner, k = np.nonzero(norm <= norm.min(axis=1, keepdims=True) + 1e-9)
        reps = (q - base)[owner] + _SHIFTS[k]
        return q[owner] - np.rint(q[owner] - reps), owner

    inner = np.random.default_rng(3).uniform(-2, 2, (50, 3))
    edge = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.5, 0.25, 0.75], [0.0, 0.5, 0.5]])
    for q in (inner, np.concatenate([inner, edge])):
        reps, owner = bz_representatives(q, cell)
        r_ref, o_ref = brute(q)
        np.testing.assert_array_equal(owner, o_ref)
        np.testing.assert_array_equal(reps, r_ref)
    assert len(bz_representatives(edge, cell)[1]) > len(edge)  # ties were found


@pytest.fixture(scope="module")
def nacl_gl(phonopy_examples):
    phonopy = pytest.importorskip("phonopy")
    from phonjax.io.phonopy import from_phonopy
    from phonjax.longrange import LongRange
    d = phonopy_examples / "NaCl"
    ph = phonopy.load(d / "phonopy_disp.yaml", force_sets_filename=d / "FORCE_SETS", born_filename=d / "BORN",
                      log_level=0)
    ph.produce_force_constants()
    fc = from_phonopy(ph)
    return ph, fc, LongRange("gonze").correction(fc)


def test_pipelined_frequencies_equal_one_pass_and_phonopy(nacl_gl, monkeypatch):
    """Chunks of 16: random q, zone-boundary q (ties), Γ with per-q directions and a NaN row, in one list; the
    pipelined frequencies equal the one-pass ones (the eigenvector path) and phonopy's DynamicalMatrixGL."""
    ph, fc, corr = nacl_gl
    rng = np.random.default_rng(4)
    q = np.concatenate([rng.uniform(-0.5, 0.5, (40, 3)), [[0.5, 0, 0.5], [0.5, 0.5, 0.5], [0, 0, 0], [0, 0, 0]],
                        rng.uniform(-0.5, 0.5, (9, 3))])
    dirs = np.full((len(q), 3), np.nan)
    dirs[42] = [1, 0, 0]
    monkeypatch.setattr(dynmat, "PIPELINE_CHUNK", 16)
    for qd in (None, dirs):
        piped = dynmat.phonons(fc, q, corr, q_direction=qd)
        one, _ = dynmat.phonons(fc, q, corr, q_direction=qd, return_eigenvectors=True)
        assert np.abs(piped - one).max() <= 1e-9
    reps, owner = bz_representatives(q[:42], fc.primitive.cell)  # phonopy's truncated G sum is not periodic:
    ph.run_qpoints(reps[np.searchsorted(owner, np.arange(42))])  # compare at the shortest representatives
    assert np.abs(piped[:42] - ph.qpoints.frequencies).max() <= 1e-6
    assert piped[42, -1] > piped[43, -1] + 0.5  # the direction at Γ splits LO from TO; the NaN row does not


def test_shortest_representative_kernel_equals_the_general_one(nacl_gl):
    """C_dd at shortest representatives (the |q + G| table skipped) equals the general kernel on the same q,
    including Γ with and without a direction (the non-analytic term) and a q below the Γ tolerance."""
    from phonjax.longrange.ewald import make_dipole_kernel, phonopy_recip_parameters
    _, fc, corr = nacl_gl
    kern = make_dipole_kernel(fc.primitive, corr.born, phonopy_recip_parameters(fc.primitive, corr.born))
    q = np.concatenate([np.random.default_rng(5).uniform(-0.5, 0.5, (30, 3)), [[0, 0, 0], [1e-9, 0, 0]]])
    reps, owner = bz_representatives(q, fc.primitive.cell)
    reps = reps[np.searchsorted(owner, np.arange(len(q)))]
    for qd in (None, np.array([1.0, 0.5, 0.0])):
        fast, general = kern(reps, qd), kern(reps, qd, fold=False)
        assert np.abs(fast - general).max() <= 1e-12 * np.abs(general).max()
    assert np.abs(kern(reps[-2:], [1, 0, 0]) - kern(reps[-2:])).max() > 1.0  # the direction matters at Γ
