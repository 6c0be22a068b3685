"""Range-matched long-range correction (``lr='recip-auto'``, phonjax.longrange.range_matched).

A synthetic "model" with a known range: nearest-neighbour springs plus the real-space Ewald part of the
dipole–dipole interaction with Λ0, folded into a LiF 6×6×6 supercell (its erfc tail < 1e-3 inside the
Wigner–Seitz cell). The fit must recover Λ0, and adding recip(Λ*) must give the same frequencies as springs +
the full C_dd(q) whatever Λ0 the "model" held. On phonopy's DFT force constants (which hold the supercell's
periodic dipole sum; gonze is the method there) recip-auto is measured against gonze. Runtime ≈ 30 s (2 shared cores).
"""
from __future__ import annotations

import numpy as np
import pytest

from phonjax.born import Born
from phonjax.structure import Crystal, make_supercell
from phonjax.longrange.ewald import ewald_parameters, make_dipole_kernel
from phonjax.longrange.gonze import supercell_dipole_fc
from phonjax.longrange.strategies import LongRangeModeError, MODES, make_correction
from phonjax.dynmat import correction_frequencies
from phonjax.fourier import fourier_fc as fourier_ws
from phonopy_data import load_example
from phonjax.longrange.range_matched import RangeMatchError, bz_distance, fit_model_lambda, polar_splitting_profile

A = 4.0628
QS = np.array([[0.25, 0.25, 0.25], [0.05, 0.0, 0.05], [0.1, 0.0, 0.1], [0.5, 0.0, 0.5], [0.3, -0.2, 0.1],
               [0.02, 0.03, 0.0]])


@pytest.fixture(scope="module")
def lif():
    cell = 0.5 * A * (np.ones((3, 3)) - np.eye(3))
    prim = Crystal(cell, np.array([[0, 0, 0], [0.5 * A, 0.5 * A, 0.5 * A]]), np.array([3, 9]),
                   np.array([6.94, 18.998]))
    z = 1.054 * np.eye(3)
    born = Born(np.array([z, -z]), 2.043 * np.eye(3))
    sc = make_supercell(prim, 6)
    return prim, born, sc, _springs(sc)


def _springs(sc, k1=2.5, k2=0.4):
    """Central springs (eV/Å²): k1 between nearest neighbours (A/2), k2 between second neighbours (A/√2)."""
    prim = sc.primitive
    n, ns = prim.n_atoms, sc.crystal.n_atoms
    fc = np.zeros((n, ns, 3, 3))
    L = sc.crystal.cell
    for i in range(n):
        d = sc.crystal.positions - prim.positions[i]
        f = d @ np.linalg.inv(L)
        d = (f - np.round(f)) @ L  # shortest image (6x6x6: no ties at these distances)
        r = np.linalg.norm(d, axis=1)
        for s in range(ns):
            for rr, k in ((A / 2, k1), (A / np.sqrt(2), k2)):
                if abs(r[s] - rr) < 1e-6:
                    u = d[s] / r[s]
                    fc[i, s] -= k * np.outer(u, u)
        fc[i, i] -= fc[i].sum(axis=0)
    return fc


def _recip_fc(sc, born, lam):
    prim = sc.primitive
    kern = make_dipole_kernel(prim, born, ewald_parameters(prim, born, lam=lam, with_real_space=False))
    return supercell_dipole_fc(sc, kern)


def _full_fc(sc, born):
    prim = sc.primitive
    return supercell_dipole_fc(sc, make_dipole_kernel(prim, born, ewald_parameters(prim, born)))


def _reference(sc, born, springs, q, qd=None):
    """Springs + the full (Λ-independent) C_dd(q): what a model holding real(Λ0) should end up with."""
    prim = sc.primitive
    c = fourier_ws(springs, sc, q) + make_dipole_kernel(prim, born, ewald_parameters(prim, born))(q, qd)
    m = np.repeat(prim.masses, 3)
    d = c.reshape(len(q), 6, 6) / np.sqrt(np.outer(m, m))
    w = np.linalg.eigvalsh(0.5 * (d + np.conj(np.swapaxes(d, 1, 2))))
    from phonjax import units
    return np.sign(w) * np.sqrt(np.abs(w)) * units.VASP_TO_THZ


def test_fit_recovers_the_range_and_result_is_lambda_independent(lif):
    prim, born, sc, springs = lif
    full = _full_fc(sc, born)
    ref = _reference(sc, born, springs, QS)
    out = []
    for lam0 in (0.07, 0.09):
        model = springs + full - _recip_fc(sc, born, lam0)  # springs + real(Λ0), folded into the supercell
        fit = fit_model_lambda(model, sc, born)
        assert abs(fit.lam / lam0 - 1) < 0.03, (lam0, fit.lam)
        assert not fit.at_bound and fit.g_leak < 1e-4 and fit.gaussian_at_edge < 0.5
        assert np.ptp(fit.per_direction) / fit.lam < 0.15  # one Λ for all directions (measured 6 / 11 %)
        corr = make_correction("recip-auto", born, sc, model)
        assert corr.lam == fit.lam and corr.info["lambda_fit"]["lambda"] == fit.lam
        f = correction_frequencies(corr, sc, QS)
        out.append(f)
        assert np.abs(f - ref).max() < 0.1, np.abs(f - ref).max()  # THz (0.5 % of LO ≈ 20 THz; measured 0.06)
    assert np.abs(out[0] - out[1]).max() < 0.1
    # the Γ non-analytic term is the full one: LO(Γ) as the reference
    g = correction_frequencies(make_correction("recip-auto", born, sc, springs + full - _recip_fc(sc, born, 0.08)),
                               sc, [[0, 0, 0]], [1.0, 0, 0])
    np.testing.assert_allclose(g, _reference(sc, born, springs, np.zeros((1, 3)), [1.0, 0, 0]), atol=0.02)


def test_profile_of_real_space_part_is_the_gaussian_complement(lif):
    prim, born, sc, springs = lif
    lam0 = 0.08
    real = _full_fc(sc, born) - _recip_fc(sc, born, lam0)
    d = np.array([1.0, 1.0, 0.0])
    t = np.linspace(0.01, 0.5 * bz_distance(d, prim.cell), 12)
    f = polar_splitting_profile(real, sc, born, d, t)
    g = 1 - np.exp(-2.043 * t ** 2 / (4 * lam0 ** 2))
    # real(Λ) = C_dd − recip(Λ): its L–T profile is 1 − Gaussian plus the dipolar q² dispersion (a t²)
    a = np.sum((f - g) * t ** 2) / np.sum(t ** 4)
    assert np.abs(f - g - a * t ** 2).max() < 5e-3
    # pure springs: no non-analytic part, only analytic anisotropy
    fs = polar_splitting_profile(springs, sc, born, d, t)
    assert np.abs(fs).max() < 0.1 * g.max()


def test_deterministic_and_refuses_user_lambda(lif):
    prim, born, sc, springs = lif
    model = springs + _full_fc(sc, born) - _recip_fc(sc, born, 0.08)
    a = fit_model_lambda(model, sc, born)
    b = fit_model_lambda(model.copy(), sc, born)
    assert a.lam == b.lam
    np.testing.assert_array_equal(a.per_direction, b.per_direction)
    with pytest.raises(LongRangeModeError, match="chooses Λ itself"):
        make_correction("recip-auto", born, sc, model, ewald_lambda=0.08)
    assert "recip-auto" in MODES


def test_added_term_is_hermitian_and_keeps_asr(lif):
    prim, born, sc, springs = lif
    model = springs + _full_fc(sc, born) - _recip_fc(sc, born, 0.08)
    corr = make_correction("recip-auto", born, sc, model)
    q = np.vstack([QS, [[0, 0, 0]]])
    c = corr.long_range(q).reshape(len(q), 6, 6)
    assert np.abs(c - np.conj(np.swapaxes(c, 1, 2))).max() < 1e-10
    c0 = corr.long_range(np.zeros((1, 3)))[0]  # Γ without direction
    assert np.abs(c0.sum(axis=2)).max() < 1e-10  # Σ_j C[i, a, j, b] = 0: rigid translations stay at zero
    np.testing.assert_array_equal(corr.short_range_fc, model)  # the force constants are used as they are
    assert np.abs(corr.removed_fc).max() == 0.0  # nothing is subtracted from the force constants


def test_errors(lif):
    prim, born, sc, springs = lif
    with pytest.raises(LongRangeModeError, match="needs Born"):
        make_correction("recip-auto", None, sc, springs)
    with pytest.raises(RangeMatchError, match="Born"):
        fit_model_lambda(springs, sc, None)
    nonpolar = Born(np.zeros((2, 3, 3)), 2.0 * np.eye(3))
    with pytest.raises(RangeMatchError, match="no LO–TO splitting"):
        fit_model_lambda(springs, sc, nonpolar)
    with pytest.raises(RangeMatchError, match="window"):
        fit_model_lambda(springs, sc, born, window=0.0)
    with pytest.raises(RangeMatchError, match="non-zero"):
        fit_model_lambda(springs, sc, born, directions=[[0, 0, 0]])


@pytest.mark.parametrize("material,limit", [("NaCl", 0.4), ("MgO", 1.1)])
def test_dft_force_constants_vs_gonze(phonopy_examples, material, limit):
    """DFT force constants hold the supercell's periodic dipole sum (gonze is exact there); recip-auto then
    approximates gonze (measured max |Δf| 0.32 THz NaCl, 1.00 THz MgO on these q) — far from the double
    counting of recip at phonopy's Λ (TO(Γ) → 0, several THz) but worse than gonze: recip-auto is for ML
    force constants."""
    pytest.importorskip("phonopy")
    _, sc, fc, born = load_example(phonopy_examples / material)
    g = correction_frequencies(make_correction("gonze", born, sc, fc), sc, QS)
    ra = make_correction("recip-auto", born, sc, fc)
    r = correction_frequencies(ra, sc, QS)
    rp = correction_frequencies(make_correction("recip", born, sc, fc), sc, QS)
    assert np.abs(r - g).max() < limit
    assert np.abs(rp - g).max() > 3 * np.abs(r - g).max()
    # Γ with a direction: the same LO/TO as gonze (both add the full non-analytic term)
    np.testing.assert_allclose(correction_frequencies(ra, sc, [[0, 0, 0]], [1.0, 0, 0]),
                               correction_frequencies(make_correction("gonze", born, sc, fc), sc, [[0, 0, 0]],
                                                      [1.0, 0, 0]), atol=2e-3)


def test_bands_job_records_lambda(phonopy_examples, tmp_path):
    """``bands`` / ``predict`` with lr='recip-auto' run through the engine and record Λ* in summary.json."""
    pytest.importorskip("phonopy")
    import json
    from phonjax.predict import bands_from_phonopy

    d = phonopy_examples / "NaCl"
    res = bands_from_phonopy(d / "phonopy_disp.yaml", force_sets=d / "FORCE_SETS", born=d / "BORN",
                             lr="recip-auto", npoints=11, out_dir=tmp_path)
    rec = json.loads((tmp_path / "summary.json").read_text())["long_range_correction"]
    assert rec["mode"] == "recip-auto" and rec["lambda"] == rec["lambda_fit"]["lambda"] > 0
    g = np.sort(res.gamma_frequencies)
    np.testing.assert_allclose(g[3:], [4.6164, 4.6164, 7.3963], atol=2e-3)  # the full NA term at Γ
