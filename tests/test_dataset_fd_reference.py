"""Committed DFT finite-displacement force constants (examples/LiF/fd: 3×3×3 supercell, PBE 80/960 Ry, Γ k)
against the committed DFPT dispersion (examples/LiF/dfpt, 4×4×4 q): phonopy with its Gonze dipole-dipole
NAC, and phonjax's `gonze` long-range correction on the same force constants, must both reproduce DFPT.
No QE needed. Runtime ~5 s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonjax.compare import compare_bands, gamma_indices
from phonjax.io.band_yaml import BandData, read_band_yaml

ROOT = Path(__file__).resolve().parents[1]
LIF = ROOT / "examples" / "LiF"


def _segments(band: BandData):
    starts = np.cumsum([0, *band.segment_nqpoint])
    return [band.qpoints[a:b] for a, b in zip(starts[:-1], starts[1:])]


@pytest.fixture(scope="module")
def fd_phonopy():
    if not (LIF / "fd" / "FORCE_SETS").is_file():
        pytest.skip("examples/LiF/fd/FORCE_SETS not present")
    phonopy = pytest.importorskip("phonopy")
    from phonopy.interface.calculator import read_crystal_structure
    unit, _ = read_crystal_structure(str(LIF / "POSCAR"), interface_mode="vasp")
    ph = phonopy.Phonopy(unit, supercell_matrix=np.diag([3, 3, 3]), primitive_matrix="P")
    ph.dataset = phonopy.file_IO.parse_FORCE_SETS(filename=str(LIF / "fd" / "FORCE_SETS"))
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    return ph


def test_fd_phonopy_gonze_matches_dfpt(fd_phonopy):
    from phonopy.file_IO import parse_BORN
    ref = read_band_yaml(LIF / "dfpt" / "band.yaml")
    ph = fd_phonopy
    ph.nac_params = parse_BORN(ph.primitive, filename=str(LIF / "BORN"))
    ph.run_band_structure(_segments(ref), path_connections=[True, False, True, False])
    pred = np.concatenate(ph.band_structure.frequencies)
    m = compare_bands(BandData(ref.qpoints, ref.distances, pred), ref)
    print("\nphonopy(FD 3x3x3 + Gonze NAC) vs DFPT:\n" + m.summary())
    assert m.gamma_lo_rel_error == pytest.approx(0, abs=0.01)  # LO from the same ε∞, Z*
    assert abs(m.gamma_to_rel_error) < 0.03
    assert m.rmse < 0.25 and m.max_abs_error < 0.8


def test_fd_phonjax_gonze_matches_phonopy_and_dfpt(fd_phonopy):
    pytest.importorskip("phonjax.longrange.calibrate")
    from phonjax.io.born import read_born
    from phonjax.dataset.fd import phonopy_fc_to_phonjax
    from phonjax.dataset import read_structure
    from phonjax.dynmat import correction_frequencies
    from phonjax.longrange.strategies import make_correction

    ref = read_band_yaml(LIF / "dfpt" / "band.yaml")
    crystal = read_structure(LIF / "POSCAR")
    fc, sc = phonopy_fc_to_phonjax(fd_phonopy, crystal, [3, 3, 3])
    born = read_born(LIF / "BORN", crystal.to_ase())
    corr = make_correction("gonze", born, sc, fc)
    q = ref.qpoints
    freqs = correction_frequencies(corr, sc, q)
    # at Γ the non-analytic direction is the path direction (the neighbouring q-point), as in DFPT/phonopy
    rec_t = np.linalg.inv(crystal.cell).T
    for k in gamma_indices(q):
        nb = k + 1 if k + 1 < len(q) and not np.allclose(q[k + 1], q[k]) else k - 1
        d = (q[nb] - q[k]) @ rec_t
        freqs[k] = correction_frequencies(corr, sc, q[k:k + 1], d / np.linalg.norm(d))[0]
    m = compare_bands(BandData(q, ref.distances, freqs), ref)
    print("\nphonjax(FD 3x3x3, gonze) vs DFPT:\n" + m.summary())
    assert m.rmse < 0.25 and abs(m.gamma_lo_rel_error) < 0.01
    # and the same as phonopy's Gonze NAC on the same force constants
    ph = fd_phonopy
    from phonopy.file_IO import parse_BORN
    ph.nac_params = parse_BORN(ph.primitive, filename=str(LIF / "BORN"))
    ph.run_band_structure(_segments(ref), path_connections=[True, False, True, False])
    pp = np.concatenate(ph.band_structure.frequencies)
    assert compare_bands(BandData(q, ref.distances, freqs), BandData(q, ref.distances, pp)).max_abs_error < 0.02
