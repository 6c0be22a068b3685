"""End-to-end through the phonon engine: ForceConstants.frequencies(lr=...) with phonopy's NaCl / LiF data
against phonopy's DynamicalMatrixGL (computed here). Runtime ≈ 10 s."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("phonopy")
fcmod = pytest.importorskip("phonjax.force_constants")
pytest.importorskip("phonjax.dynmat")

from phonopy_data import load_lif_unsymmetrized  # noqa: E402
from test_longrange_phonopy import Case, _load_symmetric  # noqa: E402

from phonjax.longrange.ewald import fold_to_bz  # noqa: E402


@pytest.fixture(scope="module", params=["NaCl", "LiF-nosym"])
def case(request, phonopy_examples):
    d = phonopy_examples / request.param
    if request.param == "LiF-nosym":
        ph = load_lif_unsymmetrized(d)
        c = Case(ph, d / "BORN", unitcell=ph.unitcell)
    else:
        c = Case(_load_symmetric(d), d / "BORN")
    c.fcobj = fcmod.ForceConstants(c.sc, c.fc, c.born, qspace_asr=False)
    return c


def test_engine_gonze_matches_phonopy(case):
    rng = np.random.default_rng(11)
    qs = np.concatenate([[[0.25, 0.25, 0.25], [0.5, 0, 0.5], [0.5, 0.5, 0.5]],
                         fold_to_bz(rng.uniform(-1, 1, (30, 3)), case.prim.cell)])
    f = case.fcobj.frequencies(qs, lr="gonze")
    assert np.abs(f - case.ref_freqs(qs)).max() < 1e-4
    g = case.fcobj.frequencies([[0, 0, 0]], lr="gonze", q_direction=[1.0, 0, 0])  # reduced, as phonopy's
    assert np.abs(g - case.ref_freqs([[0, 0, 0]], [1, 0, 0])).max() < 1e-4
    assert np.abs(case.fcobj.frequencies(qs[:3]) - f[:3]).max() < 1e-12  # "auto" = gonze with Born data


def test_engine_modes_run(case):
    q = [[0.1, 0.0, 0.1], [0, 0, 0]]
    for lr in ("none", "na", "ewald", "recip", "wang"):
        f = case.fcobj.frequencies(q, lr=lr, q_direction=[1.0, 0, 0])
        assert f.shape == (2, 6) and np.all(np.isfinite(f))
    f = case.fcobj.frequencies(q, lr="ewald-leak", leak_region="sphere:3.0")
    assert np.all(np.isfinite(f))
