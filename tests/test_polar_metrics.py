"""LO-shape metrics near Γ on constructed dispersions with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from phonjax.polar_metrics import near_gamma_metrics, summarize


def _path():
    # Γ→X (11 points), X→U (3), K→Γ (11): Γ at the start of the first and the end of the third segment
    q1 = np.linspace([0, 0, 0], [0.5, 0, 0.5], 11)
    q2 = np.linspace([0.5, 0, 0.5], [0.625, 0.25, 0.625], 3)
    q3 = np.linspace([0.375, 0.375, 0.75], [0, 0, 0], 11)
    q = np.concatenate([q1, q2, q3])
    d = np.concatenate([np.linspace(0, 1, 11), 1 + np.linspace(0, 0.2, 3), 1.2 + np.linspace(0, 1, 11)])
    return q, d, (11, 3, 11), (("GAMMA", "X"), ("X", "U"), ("K", "GAMMA"))


def _bands(lo, to=None):
    nq = len(lo)
    ac = np.linspace(0, 1, nq)[:, None] * np.array([1.0, 1.0, 2.0])
    to = np.full(nq, 8.0) if to is None else to
    return np.column_stack([ac, to, to, lo])


def test_shape_vs_shift_and_rises():
    q, d, seg, lab = _path()
    s = np.abs(d - np.where(np.arange(len(d)) < 14, 0.0, 2.2))     # distance from the nearest Γ of each segment
    lo_ref = 18.0 - 2.0 * s**2                                       # falls monotonically from Γ
    shifted = lo_ref - 0.5                                           # a soft model: whole branch shifted
    humped = lo_ref + 0.6 * np.exp(-((s - 0.08) / 0.03) ** 2) * (s < 0.2)   # a bend next to Γ
    ref = _bands(lo_ref)
    m_shift = near_gamma_metrics(q, d, _bands(shifted), ref, seg, lab)
    assert len(m_shift) == 2 and m_shift[0].gamma_at_start and not m_shift[1].gamma_at_start
    assert m_shift[1].labels == ("K", "GAMMA")
    assert all(m.lo_shape_error < 1e-12 for m in m_shift)
    assert m_shift[0].lo_max_error == pytest.approx(0.5) and m_shift[0].lo_rises == (0, 0)
    m_hump = summarize(near_gamma_metrics(q, d, _bands(humped), ref, seg, lab))
    # window = first 15 % of each segment (s ≤ 0.15): points at s = 0, 0.1 → hump height there
    bump = 0.6 * (np.exp(-((0.1 - 0.08) / 0.03) ** 2) - np.exp(-(0.08 / 0.03) ** 2))   # hump(0.1) − hump(Γ)
    h = bump - 2.0 * 0.1**2
    assert m_hump["lo_shape_error_thz"] == pytest.approx(bump, rel=1e-9)
    assert m_hump["lo_rises_pred"] == 2 and m_hump["lo_rises_ref"] == 0
    assert m_hump["lo_rise_height_pred_thz"] == pytest.approx(h, rel=1e-9)
    assert m_hump["n_gamma_segments"] == 2
    assert m_hump["to_shape_error_thz"] < 1e-12                      # the transverse branches are DFPT's


def test_to_shape_is_the_models_own_dispersion():
    q, d, seg, lab = _path()
    s = np.abs(d - np.where(np.arange(len(d)) < 14, 0.0, 2.2))
    lo = 18.0 - 2.0 * s**2
    to_ref = 8.0 - 1.0 * s**2
    to_pred = 7.0 + 3.0 * s**2                                       # shifted (ignored) and bent upwards
    m = summarize(near_gamma_metrics(q, d, _bands(lo, to_pred), _bands(lo, to_ref), seg, lab))
    # window s ≤ 0.15 holds s = 0 and 0.1: bend (3 + 1)·0.1²
    assert m["to_shape_error_thz"] == pytest.approx(4.0 * 0.1**2, rel=1e-9)
    assert m["lo_shape_error_thz"] < 1e-12


def test_bad_input():
    q, d, seg, lab = _path()
    b = _bands(np.full(len(q), 18.0))
    with pytest.raises(ValueError, match="must both be"):
        near_gamma_metrics(q, d, b[:-1], b, seg, lab)
    with pytest.raises(ValueError, match="sums to"):
        near_gamma_metrics(q, d, b, b, (5, 5), lab)
    with pytest.raises(ValueError, match="fraction"):
        near_gamma_metrics(q, d, b, b, seg, lab, fraction=0)
