"""Band paths, band structures (Γ directions, labels, distances), DOS, plots and the predict/bands jobs."""
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import phonjax  # noqa: F401
from phonjax.bands import BandPathError, band_path
from phonjax.force_constants import force_constants
from phonjax.potentials import rock_salt_potential
from phonjax.structure import Crystal

POT = rock_salt_potential(4.03, "Li", "F")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "phonopy-examples"


@pytest.fixture(scope="module")
def lif_fc():
    return force_constants(POT, bulk("LiF", "rocksalt", a=4.03), 3)


def test_fcc_path_labels_distances():
    cr = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
    bp = band_path(cr, "GXU,KGL", npoints=5)
    assert bp["labels"] == ("Γ", "X", "U|K", "Γ", "L")
    assert bp["segment_nqpoint"] == (5, 5, 5, 5)
    assert np.allclose(bp["qpoints"][4], [0.5, 0.0, 0.5])  # X of the FCC primitive basis (phonopy's)
    d = bp["distances"]
    assert np.all(np.diff(d) >= -1e-15)
    # |Γ X| = 1/a (no 2π) for the conventional cubic a
    assert abs(d[4] - 1 / 4.03) < 1e-12
    # U|K: no jump across the break
    assert abs(d[10] - d[9]) < 1e-15
    # the Γ points carry the direction of their neighbours
    g = np.flatnonzero(np.linalg.norm(bp["qpoints"], axis=1) < 1e-12)
    assert len(g) == 3 and np.all(np.isfinite(bp["q_directions"][g]))
    auto = band_path(cr, None, density=40)
    assert auto["labels"][0] == "Γ" and len(auto["qpoints"]) > 50
    with pytest.raises(BandPathError):
        band_path(cr, "GQ")
    with pytest.raises(BandPathError):
        band_path(cr, [[[0, 0, 0]]])


def test_band_structure_user_path_and_dos(lif_fc, tmp_path):
    bs = lif_fc.band_structure([[("Γ", [0, 0, 0]), ("X", [0.5, 0, 0.5])]], npoints=21, with_eigenvectors=True)
    assert bs.frequencies.shape == (21, 6) and bs.eigenvectors.shape == (21, 6, 6)
    assert np.allclose(bs.frequencies, lif_fc.frequencies(bs.qpoints))
    assert np.abs(bs.frequencies[0, :3]).max() < 1e-6
    fig = bs.plot(tmp_path / "band.png")
    assert (tmp_path / "band.png").stat().st_size > 1000 and fig is not None
    bs.plot(tmp_path / "band.pdf", reference=bs.to_band_data())
    assert (tmp_path / "band.pdf").is_file()
    dos = lif_fc.dos((6, 6, 6))
    integral = np.trapezoid(dos.dos, dos.frequencies)
    assert abs(integral - 6.0) < 0.05
    from phonjax.plot import plot_dos
    plot_dos(dos, tmp_path / "dos.png")
    assert (tmp_path / "dos.png").is_file()


def test_predict_job_writes_outputs(tmp_path):
    from phonjax.predict import predict
    res = predict(bulk("LiF", "rocksalt", a=4.03), POT, 2, npoints=7, out_dir=tmp_path / "out", progress=False)
    for name in ("band.png", "band.yaml", "force_constants.hdf5", "summary.json", "summary.txt"):
        assert (tmp_path / "out" / name).is_file(), name
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["n_imaginary_qpoints"] == 0 and s["lr"] == "none"
    assert np.abs(res.gamma_frequencies[:3]).max() < 1e-6
    assert "Γ frequencies" in res.summary_text()
    # the same structure with the first job's band.yaml as reference: zero error on the same q-points
    res2 = predict(bulk("LiF", "rocksalt", a=4.03), POT, 2, reference=tmp_path / "out" / "band.yaml",
                   out_dir=tmp_path / "out2", progress=False)
    assert res2.comparison is not None and res2.comparison.as_dict()
    assert np.allclose(res2.band.frequencies, res.band.frequencies, atol=1e-9)
    with pytest.raises(FileNotFoundError):
        predict(tmp_path / "nope.cif", POT, 2, out_dir=tmp_path / "x", progress=False)


def test_bands_from_phonopy_with_born(tmp_path):
    phonopy = pytest.importorskip("phonopy")
    d = SHARED / "NaCl"
    if not (d / "BORN").is_file():
        pytest.skip(f"phonopy example data not found at {d}")
    from phonjax.predict import bands_from_phonopy
    ph = phonopy.load(str(d / "phonopy_disp.yaml"), force_sets_filename=str(d / "FORCE_SETS"),
                      born_filename=str(d / "BORN"), log_level=0)
    ph.save(str(tmp_path / "phonopy_params.yaml"), settings={"force_constants": True})
    res = bands_from_phonopy(tmp_path / "phonopy_params.yaml", npoints=11, out_dir=tmp_path / "o", progress=False)
    assert res.lr == "gonze"
    # LO–TO splitting at Γ with q̂ = x (reference: phonopy 4.10, shared docs): 4.6164 (TO), 7.3963 (LO) THz
    assert abs(res.gamma_frequencies[3] - 4.6164) < 2e-3 and abs(res.gamma_frequencies[5] - 7.3963) < 2e-3
    assert (tmp_path / "o" / "band.png").is_file()
