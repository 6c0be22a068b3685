"""The --lr strategies on phonopy's NaCl data: consistency between modes, Λ behaviour, leak regions, LO
projection, the Λ scan helper and input errors. Runtime ≈ 25 s."""
from __future__ import annotations

import numpy as np
import pytest

phonopy = pytest.importorskip("phonopy")
from phonopy.harmonic.dynamical_matrix import DynamicalMatrix  # noqa: E402

from phonjax.born import Born, BornError  # noqa: E402
from phonjax.structure import Crystal, make_supercell, commensurate_qpoints  # noqa: E402
from phonjax.longrange.ewald import QDirectionError  # noqa: E402
from phonopy_data import load_example  # noqa: E402
from phonjax.longrange.leak import LeakRegion, LeakRegionError, leak_fc, leak_pairs, leak_q, parse_leak_region  # noqa: E402
from phonjax.longrange.strategies import LongRangeModeError, make_correction, MODES  # noqa: E402
from phonjax.longrange.calibrate import lambda_scan  # noqa: E402
from phonjax.dynmat import correction_frequencies  # noqa: E402
from phonjax.fourier import fourier_fc as fourier_ws  # noqa: E402


@pytest.fixture(scope="module")
def nacl(phonopy_examples):
    return load_example(phonopy_examples / "NaCl")


QS = np.array([[0.25, 0.25, 0.25], [0.1, 0.0, 0.05], [0.5, 0.0, 0.5], [0.3, -0.2, 0.1]])
XDIR = np.array([1.0, 0.0, 0.0])


def _f(corr, sc, q, qd=None):
    return correction_frequencies(corr, sc, q, qd)


def test_fourier_helper_matches_phonopy(nacl):
    ph, sc, fc, born = nacl
    dm = DynamicalMatrix(ph.supercell, ph.primitive, ph.force_constants)
    m = np.repeat(sc.primitive.masses, 3)
    c = fourier_ws(fc, sc, QS).reshape(len(QS), 6, 6)
    for q, cq in zip(QS, c):
        dm.run(q)
        np.testing.assert_allclose(cq / np.sqrt(np.outer(m, m)), dm.dynamical_matrix, atol=1e-12)


def test_none_and_na(nacl):
    ph, sc, fc, born = nacl
    none = make_correction("none", None, sc, fc)
    na = make_correction("na", born, sc, fc)
    gonze = make_correction("gonze", born, sc, fc)
    np.testing.assert_allclose(_f(na, sc, QS), _f(none, sc, QS), atol=1e-12)  # na acts only at Γ
    g = _f(na, sc, [[0, 0, 0]], XDIR)
    np.testing.assert_allclose(g, _f(gonze, sc, [[0, 0, 0]], XDIR), atol=1e-6)  # Γ is commensurate (√noise)
    np.testing.assert_allclose(g[0, 3:], [4.6164, 4.6164, 7.3963], atol=1e-4)
    np.testing.assert_allclose(_f(na, sc, [[0, 0, 0]]), _f(none, sc, [[0, 0, 0]]), atol=1e-12)  # no q̂


def test_ewald_modes(nacl):
    ph, sc, fc, born = nacl
    a = make_correction("ewald", born, sc, fc, ewald_lambda=0.15)
    b = make_correction("ewald", born, sc, fc, ewald_lambda=0.4)
    fa, fb = _f(a, sc, QS), _f(b, sc, QS)
    assert np.abs(fa - fb).max() < 1e-8  # full Ewald: Λ-independent
    # a leak sphere smaller than the nearest-neighbour distance removes nothing
    small = make_correction("ewald-leak", born, sc, fc, leak_region="sphere:2.0")
    assert np.abs(small.removed_fc).max() == 0.0
    np.testing.assert_allclose(_f(small, sc, QS), fa, atol=1e-8)
    # a leak region removes real interactions and obeys the acoustic sum rule (rock salt: symmetric Z*)
    leak = make_correction("ewald-leak", born, sc, fc, leak_region="sphere:6.0")
    assert np.abs(leak.removed_fc).max() > 1e-3
    assert np.abs(leak.removed_fc.sum(axis=1)).max() < 1e-10
    # ewald double counts the supercell's dipoles: Γ (commensurate) differs from the DFT force constants
    none = make_correction("none", None, sc, fc)
    assert np.abs(_f(a, sc, [[0.5, 0, 0.5]]) - _f(none, sc, [[0.5, 0, 0.5]])).max() > 0.05


def test_leak_fc_folding_matches_direct_transform(nacl):
    """Folded onto a supercell large enough to hold the region, the leak force constants transform (with
    Wigner–Seitz images) to the direct pair sum; the box region tiles N³ cells."""
    _, _, _, born = nacl
    prim = Crystal.coerce(nacl[1].primitive)
    sc = make_supercell(prim, 5)  # regions must lie inside the supercell's Wigner–Seitz cell
    for spec in ("sphere:4.5", "box:2 2 2"):
        fcl = leak_fc(sc, born, spec)
        pairs = leak_pairs(prim, born, spec)
        np.testing.assert_allclose(fourier_ws(fcl, sc, QS), leak_q(QS, prim, pairs), atol=1e-10)
    i, j, f, p, s = leak_pairs(prim, born, "box:3 3 3")
    # every partner position is counted with total weight 27 cells × 2 atoms − self
    assert parse_leak_region("box:3") == LeakRegion("box", cells=(3, 3, 3))
    assert len(i) > 0 and np.abs(f).max() <= 1.5 + 1e-8


def test_recip_is_lambda_dependent_and_gonze_is_not(nacl):
    ph, sc, fc, born = nacl
    scan = lambda_scan(sc, born, [0.15, 0.2, 0.6], QS[:2], fc=fc, modes=("recip", "gonze", "ewald"))
    assert scan.spread("ewald") < 1e-7
    assert scan.spread("recip") > 0.05
    # gonze: inside the converged window (0.15 ≤ Λ ≤ 0.25 for NaCl) equal to the default within 1e-4 THz;
    # below it the neglected real-space part outgrows the supercell, above it the G sphere is too small
    assert scan.deviation("gonze")[:2].max() < 1e-4
    assert scan.deviation("gonze")[2] > 0.1
    assert scan.frequencies["recip"].shape == (3, 2, 6)


def test_lo_projection(nacl):
    ph, sc, fc, born = nacl
    m = sc.primitive.masses
    u = np.tile(np.eye(3), (2, 1))  # rigid translations (C-space, 6 × 3)
    for mode in ("recip", "ewald", "gonze", "wang"):
        corr = make_correction(mode, born, sc, fc, lo_projection=True)
        t = corr.long_range(QS).reshape(len(QS), 6, 6)
        assert np.abs(t @ u).max() < 1e-10, mode  # a rigid translation gets no correction at any q
        g = _f(corr, sc, [[0, 0, 0]], XDIR)[0]
        assert np.abs(g[:3]).max() < 1e-3, mode
        if mode == "gonze":  # neutral Z*: the NA term is optical, the LO–TO splitting survives unchanged
            np.testing.assert_allclose(g[3:], [4.6164, 4.6164, 7.3963], atol=1e-4)
    g = make_correction("gonze", born, sc, fc, lo_projection=True)
    none = make_correction("none", None, sc, fc)
    qk = commensurate_qpoints(sc.matrix)[1:]
    assert np.abs(_f(g, sc, qk) - _f(none, sc, qk)).max() < 1e-8
    lk = make_correction("ewald-leak", born, sc, fc, leak_region="sphere:6", lo_projection=True)
    assert np.abs(lk.long_range(QS).reshape(len(QS), 6, 6) @ u).max() < 1e-10
    del m


def test_errors(nacl):
    ph, sc, fc, born = nacl
    with pytest.raises(LongRangeModeError):
        make_correction("full", born, sc, fc)
    with pytest.raises(LongRangeModeError):
        make_correction("gonze", None, sc, fc)
    with pytest.raises(LongRangeModeError):
        make_correction("ewald-leak", born, sc, fc)
    with pytest.raises(LongRangeModeError):
        make_correction("gonze", born, sc, fc, leak_region="sphere:3")
    with pytest.raises(ValueError):
        make_correction("gonze", born, sc, fc[:, :10])
    with pytest.raises(BornError):
        b3 = Born(np.zeros((3, 3, 3)), np.eye(3))
        make_correction("gonze", b3, sc, fc)
    for bad in ("sphere:-1", "box:2 2", "cube:3", "sphere:x", 3.0):
        with pytest.raises(LeakRegionError):
            parse_leak_region(bad)
    corr = make_correction("gonze", born, sc, fc)
    with pytest.raises(QDirectionError):
        corr.apply(np.zeros((1, 2, 3, 2, 3), complex), np.zeros((1, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        corr.apply(np.zeros((2, 2, 3, 2, 3), complex), np.zeros((1, 3)), None)
    assert set(MODES) == {"none", "na", "ewald", "ewald-leak", "recip", "gonze", "wang", "recip-auto"}


def test_lambda_scan_accepts_engine_object(nacl):
    fcmod = pytest.importorskip("phonjax.force_constants")
    ph, sc, fc, born = nacl
    obj = fcmod.ForceConstants(sc, fc, born, qspace_asr=False)
    scan = lambda_scan(obj, None, [0.2], QS[:1], modes=("gonze",))
    assert scan.deviation("gonze")[0] < 1e-4


def test_gonze_full_ewald_equals_recip_only(nacl):
    """The mixed-space result does not depend on splitting C_dd: full Ewald (recip+real+limit) and phonopy's
    reciprocal-only sum give the same frequencies (the real-space part is short-ranged and cancels)."""
    ph, sc, fc, born = nacl
    a = make_correction("gonze", born, sc, fc)
    b = make_correction("gonze", born, sc, fc, gonze_full_ewald=True)
    qs = np.vstack([QS, [[0.05, 0.1, 0.0]]])
    assert np.abs(_f(a, sc, qs) - _f(b, sc, qs)).max() < 1e-5
    assert np.abs(_f(a, sc, [[0, 0, 0]], XDIR) - _f(b, sc, [[0, 0, 0]], XDIR)).max() < 1e-5
