"""Finite-displacement DFT force constants against DFPT: a 2×2×2 supercell of primitive LiF at Γ-point k is
the same Brillouin-zone sampling as the primitive cell with 2×2×2 k, so the TO frequency from the FD force
constants at q = 0 must equal ph.x's Γ TO (both analytic parts, acoustic sum rule imposed).
LDA (clean acoustic modes at low density cutoff). Runtime ~15 s (3 pw.x of 16 atoms, 1 pw.x + Γ ph.x).
"""
from __future__ import annotations

import numpy as np
import pytest

from phonjax import units

from dataset_helpers import lif_primitive, require_qe, tiny_pw

pytestmark = pytest.mark.qe


def _gamma_frequencies(fc, supercell, masses):
    """q = 0 frequencies (THz) of phonjax-convention fc with the acoustic sum rule imposed."""
    n = fc.shape[0]
    s2p = np.asarray(supercell.s2p)
    c = np.zeros((n, 3, n, 3))
    for j in range(n):
        c[:, :, j, :] = fc[:, s2p == j].sum(axis=1)
    for i in range(n):
        c[i, :, i, :] -= c[i].sum(axis=1)  # Σ_j C(Γ)[i, j] = 0
    d = c / np.sqrt(np.outer(masses, masses))[:, None, :, None]
    w = np.linalg.eigvalsh(d.reshape(3 * n, 3 * n))
    return np.sign(w) * np.sqrt(np.abs(w)) * units.VASP_TO_THZ


def test_fd_force_constants_match_dfpt_at_gamma(tmp_path):
    require_qe("pw.x", "ph.x", "q2r.x", "matdyn.x")
    pytest.importorskip("phonopy")
    from phonjax.compare import gamma_indices
    from phonjax.dataset import DfptConfig, run_dfpt
    from phonjax.dataset.fd import fd_force_constants

    crystal = lif_primitive(3.905)  # LDA equilibrium at converged cutoffs
    lda = dict(pseudo_family="LDA", ecutwfc=60.0, ecutrho=240.0, conv_thr=1e-12)
    ref = run_dfpt(crystal, DfptConfig(pw=tiny_pw(kpts=(2, 2, 2), **lda), relax=False, qgrid=(1, 1, 1),
                                       npoints=24, nprocs=1, npool=1, prefix="r", tr2_ph=1e-16),
                   tmp_path / "dfpt")
    g = gamma_indices(ref.band.qpoints)[0]
    to_dfpt = np.sort(ref.band.frequencies[g])[3]

    res = fd_force_constants(crystal, [2, 2, 2], tiny_pw(kpts=(1, 1, 1), **lda), tmp_path / "fd",
                             amplitude=0.01, progress=False)
    assert res.fc.shape == (2, 16, 3, 3) and res.n_displacements == 2
    assert (tmp_path / "fd" / "FORCE_SETS").is_file()
    f = _gamma_frequencies(res.fc, res.supercell, crystal.masses)
    np.testing.assert_allclose(f[:3], 0, atol=1e-6)
    assert f[3] == pytest.approx(to_dfpt, rel=1e-2), (f, to_dfpt)
    # Newton's third law / symmetric Hessian: fc[i, j] = fc[j', i']ᵀ for the home-cell block
    np.testing.assert_allclose(res.fc[:, :2], np.transpose(res.fc[:, :2], (1, 0, 3, 2)), atol=1e-3)
    # resume: nothing is recomputed on a second call
    mt = (tmp_path / "fd" / "disp-001" / "scf.out").stat().st_mtime_ns
    again = fd_force_constants(crystal, [2, 2, 2], tiny_pw(kpts=(1, 1, 1), **lda), tmp_path / "fd",
                               amplitude=0.01, progress=False)
    assert (tmp_path / "fd" / "disp-001" / "scf.out").stat().st_mtime_ns == mt
    np.testing.assert_allclose(again.fc, res.fc)
