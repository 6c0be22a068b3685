"""from_phonopy / to_phonopy against phonopy itself (NaCl example data, conventional 2×2×2 supercell = general
integer matrix relative to the primitive cell), force_constants.hdf5 and band.yaml round trips."""
from pathlib import Path

import numpy as np
import pytest
import yaml

import phonjax  # noqa: F401
from phonjax.io.phonopy import (PhonopyIOError, from_phonopy, read_force_constants_hdf5, to_phonopy,
                                write_force_constants_hdf5)

phonopy = pytest.importorskip("phonopy")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "phonopy-examples"


@pytest.fixture(scope="module")
def nacl_phonopy():
    d = SHARED / "NaCl"
    if not (d / "FORCE_SETS").is_file():
        pytest.skip(f"phonopy example data not found at {d} (../shared beside the project)")
    return phonopy.load(str(d / "phonopy_disp.yaml"), force_sets_filename=str(d / "FORCE_SETS"), is_nac=False,
                        log_level=0)


def test_from_phonopy_reproduces_phonopy(nacl_phonopy):
    ph = nacl_phonopy
    fc = from_phonopy(ph)
    assert fc.born is None and fc.supercell.crystal.n_atoms == 64
    assert round(abs(np.linalg.det(fc.supercell.matrix))) == 32  # conventional 2×2×2 on the FCC primitive cell
    q = np.random.default_rng(0).uniform(-1, 1, (200, 3))
    ph.run_qpoints(q)
    ref = ph.qpoints.frequencies
    f = fc.frequencies(q)
    assert np.abs(f - ref).max() <= 1e-6
    assert ref.max() > 4.0


def test_round_trip_exact_and_hdf5(nacl_phonopy, tmp_path):
    fc = from_phonopy(nacl_phonopy)
    ph2 = to_phonopy(fc)
    fc2 = from_phonopy(ph2)
    assert np.array_equal(fc2.fc, fc.fc)
    assert np.array_equal(fc2.supercell.matrix, fc.supercell.matrix)
    q = np.random.default_rng(1).uniform(-1, 1, (30, 3))
    ph2.run_qpoints(q)
    assert np.abs(ph2.qpoints.frequencies - fc.frequencies(q)).max() <= 1e-6
    # force_constants.hdf5 read back by phonopy's reader
    path = write_force_constants_hdf5(fc, tmp_path / "force_constants.hdf5")
    from phonopy.file_IO import read_force_constants_hdf5 as ph_read
    raw = ph_read(str(path))
    assert raw.shape == (2, 64, 3, 3)
    assert np.array_equal(raw, ph2.force_constants)
    fc3 = read_force_constants_hdf5(path, fc.primitive, fc.supercell.matrix)
    assert np.array_equal(fc3.fc, fc.fc)


def test_params_yaml_with_born(nacl_phonopy, tmp_path):
    """phonopy_params.yaml written by phonopy (force constants + NAC) → ForceConstants with Born data."""
    d = SHARED / "NaCl"
    ph = phonopy.load(str(d / "phonopy_disp.yaml"), force_sets_filename=str(d / "FORCE_SETS"),
                      born_filename=str(d / "BORN"), log_level=0)
    out = tmp_path / "phonopy_params.yaml"
    ph.save(str(out), settings={"force_constants": True})
    fc = from_phonopy(out)
    assert fc.born is not None and abs(fc.born.factor - 14.4) < 1e-12
    ph.run_qpoints([[0.25, 0.25, 0.25]])
    f = fc.frequencies([[0.25, 0.25, 0.25]], lr="gonze")
    assert np.abs(f - ph.qpoints.frequencies).max() < 1e-4  # phonopy's own Gonze–Lee (B's kernel)
    assert fc.frequencies([[0.25, 0.25, 0.25]], lr="none").max() < f.max() - 0.1  # NAC does something


def test_band_yaml_written_in_phonopy_format(nacl_phonopy, tmp_path):
    from phonjax.io.band_yaml import read_band_yaml
    fc = from_phonopy(nacl_phonopy)
    bs = fc.band_structure("GXU,KGL", npoints=9)
    p = bs.write_yaml(tmp_path / "band.yaml")
    back = read_band_yaml(p)
    assert np.allclose(back.frequencies, bs.frequencies, atol=1e-6)
    assert np.allclose(back.qpoints, bs.qpoints)
    d = yaml.safe_load(p.read_text())
    assert d["nqpoint"] == len(bs.qpoints) and len(d["phonon"][0]["band"]) == 6
    assert list(d["segment_nqpoint"]) == [9, 9, 9, 9]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_phonopy(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("not: [a, phonopy, file\n")
    with pytest.raises(PhonopyIOError):
        from_phonopy(tmp_path / "bad.yaml")
    with pytest.raises(PhonopyIOError):
        from_phonopy(object())
