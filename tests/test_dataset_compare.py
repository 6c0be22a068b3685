"""Band comparison and band.yaml I/O against phonopy (NaCl example with NAC): phonopy's own band.yaml is
read back exactly, our writer produces what phonopy's layout promises, and the error metrics equal
numpy-computed values. No QE needed. Runtime ~3 s.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from phonjax.compare import BandMismatchError, compare_bands, gamma_indices
from phonjax.io.band_yaml import BandData, path_distances, read_band_yaml, write_band_yaml
from phonjax.dataset.dfpt import band_path
from phonjax.structure import Crystal


@pytest.fixture(scope="module")
def nacl_band(phonopy_examples, tmp_path_factory):
    """phonopy computes NaCl (with BORN) along our Γ–X–U|K–Γ–L path and writes its own band.yaml."""
    phonopy = pytest.importorskip("phonopy")
    d = phonopy_examples / "NaCl"
    ph = phonopy.load(str(d / "phonopy_disp.yaml"), force_sets_filename=str(d / "FORCE_SETS"),
                      born_filename=str(d / "BORN"), log_level=0)
    prim = ph.primitive
    crystal = Crystal(prim.cell, prim.scaled_positions @ prim.cell, prim.numbers, prim.masses)
    q, seg, labels = band_path(crystal, "GXU,KGL", 60)
    starts = np.cumsum([0, *seg])
    paths = [q[a:b] for a, b in zip(starts[:-1], starts[1:])]
    ph.run_band_structure(paths, path_connections=[True, False, True, False],
                          labels=["G", "X", "U", "K", "G", "L"])
    out = tmp_path_factory.mktemp("nacl") / "band.yaml"
    ph.write_yaml_band_structure(filename=str(out))
    freqs = np.concatenate(ph.band_structure.frequencies)
    dists = np.concatenate(ph.band_structure.distances)
    return out, q, seg, freqs, dists, crystal


def test_read_phonopy_band_yaml(nacl_band):
    path, q, seg, freqs, dists, crystal = nacl_band
    b = read_band_yaml(path)
    np.testing.assert_allclose(b.qpoints, q, atol=1e-7)
    np.testing.assert_allclose(b.frequencies, freqs, atol=1e-7)
    np.testing.assert_allclose(b.distances, dists, atol=1e-6)
    assert b.segment_nqpoint == seg
    # our distance convention is phonopy's (1/Å, no 2π, no jump across the U|K break)
    np.testing.assert_allclose(path_distances(q, crystal.cell, seg), dists, atol=1e-6)
    # LO–TO at Γ present (NaCl with BORN): ~4.8 / ~7.9 THz in phonopy's example
    m = compare_bands(path, path)
    assert m.rmse == 0 and m.max_abs_error == 0
    assert 3.5 < m.gamma_to_ref < 5.5 and 7.0 < m.gamma_lo_ref < 9.0


def test_metrics_equal_numpy(nacl_band):
    path, q, seg, freqs, _, _ = nacl_band
    rng = np.random.default_rng(1)
    pred = freqs + rng.normal(0, 0.1, freqs.shape)
    pred = np.sort(pred, axis=1)
    ref_sorted = np.sort(freqs, axis=1)
    m = compare_bands(pred, path)
    err = pred - ref_sorted
    np.testing.assert_allclose(m.rmse_per_branch, np.sqrt((err**2).mean(axis=0)), rtol=1e-8)
    np.testing.assert_allclose(m.mae_per_branch, np.abs(err).mean(axis=0), rtol=1e-8)
    assert m.max_abs_error == pytest.approx(np.abs(err).max())
    g = gamma_indices(q)
    assert m.gamma_lo_pred == pytest.approx(pred[g, 5].mean())
    assert m.gamma_to_rel_error == pytest.approx((pred[g, 3].mean() - ref_sorted[g, 3].mean())
                                                 / ref_sorted[g, 3].mean())
    assert "RMSE" in m.summary() and set(m.as_dict()) >= {"rmse_thz", "gamma_lo_rel_error"}
    with pytest.raises(BandMismatchError):
        compare_bands(pred[:-1], path)
    shifted = BandData(q + 0.01, np.zeros(len(q)), freqs)
    with pytest.raises(BandMismatchError, match="q-points differ"):
        compare_bands(shifted, path)


def test_write_band_yaml_round_trip(nacl_band, tmp_path):
    path, q, seg, freqs, dists, crystal = nacl_band
    b = BandData(q, dists, freqs, seg, (("GAMMA", "X"), ("X", "U"), ("K", "GAMMA"), ("GAMMA", "L")),
                 lattice=crystal.cell, symbols=("Na", "Cl"), scaled_positions=crystal.scaled_positions,
                 masses=crystal.masses, comment="test")
    out = tmp_path / "band.yaml"
    write_band_yaml(out, b)
    d = yaml.safe_load(out.read_text())
    ref = yaml.safe_load(path.read_text())
    assert d["nqpoint"] == ref["nqpoint"] and d["segment_nqpoint"] == ref["segment_nqpoint"]
    np.testing.assert_allclose(d["reciprocal_lattice"], ref["reciprocal_lattice"], atol=1e-10)
    np.testing.assert_allclose(d["lattice"], ref["lattice"], atol=1e-10)
    back = read_band_yaml(out)
    np.testing.assert_allclose(back.frequencies, freqs, atol=1e-9)
    np.testing.assert_allclose(back.qpoints, q, atol=1e-7)


def test_plot_band_comparison(nacl_band, tmp_path):
    pytest.importorskip("matplotlib")
    from phonjax.plot import plot_band_comparison
    path, *_ = nacl_band
    fig = plot_band_comparison(path, path, tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    import matplotlib.pyplot as plt
    plt.close(fig)
