"""Long range as one value (issue 16): the ``auto`` policy by provenance, API = CLI, q_direction in phonopy's
reduced basis (checked against phonopy's DynamicalMatrixGL on a hexagonal cell with anisotropic Z*/ε∞), a zero
direction refused, a new strategy = one builder + one registration, ForceConstants a plain record."""
from __future__ import annotations

import os
import dataclasses
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest

import phonjax  # noqa: F401  (x64)
from phonjax.born import Born
from phonjax.io.born import read_born
from phonjax.cli import main as cli_main
from phonjax.compare import read_band_yaml
from phonjax.force_constants import ForceConstants, force_constants
from phonjax.longrange import LongRange, LongRangeModeError, make_correction, register, unregister
from phonjax.longrange.builders import na as na_builder
from phonjax.longrange.dipole_labels import long_range_record
from phonjax.longrange.policy import AUTO_MODES, auto_mode
from phonjax.models import load_model
from phonjax.models.nequip.model import Model
from phonjax.io.phonopy import from_phonopy
from phonjax.potentials import PairPotential
from phonjax.io.structure import read_structure as load_structure
from phonjax.structure import Crystal, make_supercell

ROOT = Path(__file__).resolve().parents[1]
LIF = ROOT / "examples" / "LiF"
NACL = ROOT.parent / "shared" / "data" / "phonopy-examples" / "NaCl"
ARCH = dict(r_max=3.0, l_max=1, num_layers=2, num_features=4, radial_mlp_width=8, num_bessels=4)
NPTS = 5


@pytest.fixture(scope="module")
def lif():
    prim = load_structure(LIF / "POSCAR")
    return prim, read_born(LIF / "BORN", prim)


@pytest.fixture(scope="module")
def model_dirs(lif, tmp_path_factory):
    """A random small NequIP model and a short-range (dipole-subtracted) variant, saved as model directories."""
    from phonjax.models.nequip.train_adapter import nequip_arch_config
    prim, born = lif
    m = Model.init(nequip_arch_config(("Li", "F"), **ARCH), seed=0)
    root = tmp_path_factory.mktemp("models")
    plain = m.save(root / "plain")
    sr = Model(m.config, m.params, {"long_range": long_range_record(born, prim, born_file=str(LIF / "BORN"),
                                                                    reference=str(LIF / "POSCAR"),
                                                                    supercell_matrix=3)}).save(root / "sr")
    shutil.copyfile(LIF / "BORN", sr / "BORN")
    return plain, sr


def _cli_bands(args, out):
    assert cli_main([*args, "--npoints", str(NPTS), "--out", str(out)]) == 0
    return read_band_yaml(out / "band.yaml").frequencies


@pytest.mark.parametrize("kind", ["model", "short-range-model"])
def test_api_and_cli_agree_for_models(kind, lif, model_dirs, tmp_path):
    prim, born = lif
    d = model_dirs[0] if kind == "model" else model_dirs[1]
    fc = force_constants(load_model(d), prim, 2, born=born, allow_small_supercell=True)
    assert fc.provenance == kind
    api = fc.band_structure(npoints=NPTS)  # lr='auto'
    assert api.lr == AUTO_MODES[kind] == ("recip-auto" if kind == "model" else "ewald")
    args = ["predict", str(LIF / "POSCAR"), "--model", str(d), "--supercell", "2", "--allow-small-supercell"]
    if kind == "model":
        args += ["--born", str(LIF / "BORN")]  # the short-range model brings its own
    cli = _cli_bands(args, tmp_path)
    np.testing.assert_allclose(cli, api.frequencies, atol=1e-6)  # band.yaml keeps 10 decimals


def test_api_and_cli_agree_for_phonopy_force_constants(tmp_path):
    fc = from_phonopy(NACL / "phonopy_disp.yaml")
    assert fc.provenance == "external" and fc.born is not None
    api = fc.band_structure(npoints=NPTS)
    assert api.lr == "gonze"
    cli = _cli_bands(["bands", "--phonopy", str(NACL / "phonopy_disp.yaml")], tmp_path)
    np.testing.assert_allclose(cli, api.frequencies, atol=1e-6)
    # auto is what it says: the same numbers as the explicit mode, different from another mode
    np.testing.assert_array_equal(api.frequencies, fc.band_structure(npoints=NPTS, lr="gonze").frequencies)
    assert np.abs(api.frequencies - fc.band_structure(npoints=NPTS, lr="recip").frequencies).max() > 1e-3


def test_policy_table():
    assert auto_mode("model", True) == "recip-auto" and auto_mode("short-range-model", True) == "ewald"
    assert auto_mode("external", True) == "gonze" and auto_mode("model", False) == "none"
    with pytest.raises(ValueError, match="provenance"):
        auto_mode("dft-ish", True)


# ---------------------------------------------------------------------------------------------------------------
# q_direction: phonopy's reduced basis, on a uniaxial (hexagonal) crystal
@pytest.fixture(scope="module")
def hexagonal():
    a, c = 3.1, 5.1
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
    prim = Crystal(cell, np.array([[0, 0, 0], [1 / 3, 2 / 3, 0.5]]) @ cell, np.array([3, 9]))
    pot = PairPotential.from_pairs({("Li", "F"): {"A": 300.0, "rho": 0.3, "C": 2.0},
                                    ("Li", "Li"): {"A": 50.0, "rho": 0.3}, ("F", "F"): {"A": 80.0, "rho": 0.3}},
                                   cutoff=5.0)
    z = np.diag([1.1, 1.1, 1.6])
    born = Born(np.array([z, -z]), np.diag([2.0, 2.0, 3.2]))
    return force_constants(pot, prim, (2, 2, 2), born=born, allow_small_supercell=True)


def _phonopy_gl_gamma(fc, q_direction):
    from phonopy.harmonic.dynamical_matrix import DynamicalMatrixGL
    from phonjax.io.phonopy import to_phonopy
    ph = to_phonopy(fc, symmetry=False)
    b = fc.born
    dm = DynamicalMatrixGL(ph.supercell, ph.primitive, ph.force_constants,
                           nac_params={"born": b.zstar, "dielectric": b.epsilon, "factor": b.factor})
    dm.run([0.0, 0.0, 0.0], q_direction=q_direction)
    w = np.linalg.eigvalsh(dm.dynamical_matrix)
    return np.sign(w) * np.sqrt(np.abs(w)) * phonjax.units.VASP_TO_THZ


def test_q_direction_is_reduced_as_phonopy(hexagonal):
    pytest.importorskip("phonopy")
    fc = hexagonal
    for d in ([1.0, 0.0, 0.5], [0.3, 0.7, 0.2], [0.0, 0.0, 1.0]):
        ref = _phonopy_gl_gamma(fc, d)
        ours = fc.frequencies([[0, 0, 0]], lr="gonze", q_direction=d, asr=False)[0]
        assert np.abs(ours[3:] - ref[3:]).max() <= 1e-6, (d, ours, ref)  # optical modes, LO(Γ) included
        assert np.abs(ours[:3]).max() < 1e-5 and np.abs(ref[:3]).max() < 1e-5  # acoustic: √(rounding)
    # the test can fail: the same numbers read as Cartesian give another LO(Γ) on this anisotropic crystal
    d = np.array([1.0, 0.0, 0.5])
    as_cart = fc.frequencies([[0, 0, 0]], lr="gonze", q_direction=fc.primitive.cell @ d, asr=False)[0]
    assert np.abs(as_cart - _phonopy_gl_gamma(fc, d)).max() > 1e-2


def test_zero_q_direction_is_refused(hexagonal, tmp_path):
    with pytest.raises(ValueError, match="zero"):
        hexagonal.frequencies([[0, 0, 0]], lr="gonze", q_direction=[0, 0, 0])
    with pytest.raises(ValueError, match="zero"):
        LongRange("gonze", q_direction=(0.0, 0.0, 0.0))
    r = subprocess.run([sys.executable, "-m", "phonjax.cli", "bands", "--phonopy", str(NACL / "phonopy_disp.yaml"),
                        "--q-direction", "0", "0", "0", "--out", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
                       timeout=300)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "zero" in err[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "band.yaml").exists()


# ---------------------------------------------------------------------------------------------------------------
# a new strategy: one builder + one registration
def test_toy_strategy_is_one_builder_and_one_registration(lif, tmp_path):
    prim, born = lif
    fc = force_constants(PairPotential.from_pairs({("Li", "F"): {"A": 400.0, "rho": 0.28}}, cutoff=4.5), prim, 2,
                         born=born, allow_small_supercell=True)

    def build(req):  # twice the non-analytic term of "na"
        na = na_builder.build(req)
        return req.correction("toy-2na", lambda q, qd: 2.0 * na.long_range(q, qd))

    register("toy-2na", build)
    try:
        g, d = [[0, 0, 0]], [1.0, 0.0, 0.0]
        f0 = fc.frequencies(g, lr="none", asr=False)[0]
        f1 = fc.frequencies(g, lr="na", q_direction=d, asr=False)[0]
        f2 = fc.frequencies(g, lr="toy-2na", q_direction=d, asr=False)[0]
        # rock salt: LO² = TO² + NA, so the toy's LO² − TO² is twice na's
        assert f1[-1] ** 2 - f0[-1] ** 2 > 1.0
        np.testing.assert_allclose(f2[-1] ** 2 - f0[-1] ** 2, 2 * (f1[-1] ** 2 - f0[-1] ** 2), rtol=1e-9)
        assert make_correction("toy-2na", born, fc.supercell, fc.fc).mode == "toy-2na"
        with pytest.raises(LongRangeModeError, match="leak_region"):
            make_correction("toy-2na", born, fc.supercell, fc.fc, leak_region="sphere:3")
        from phonjax.cli import build_parser  # the CLI lists it
        assert build_parser().parse_args(["bands", "--phonopy", "x", "--lr", "toy-2na"]).lr == "toy-2na"
        with pytest.raises(LongRangeModeError):
            register("toy-2na", build)
    finally:
        unregister("toy-2na")
    with pytest.raises(ValueError, match="unknown long-range mode"):
        LongRange("toy-2na")


def test_force_constants_is_a_plain_record(lif):
    prim, born = lif
    sc = make_supercell(prim, 2)
    fc = ForceConstants(sc, np.zeros((2, sc.crystal.n_atoms, 3, 3)), born)
    names = {f.name for f in dataclasses.fields(fc)}
    assert names == {"supercell", "fc", "born", "report", "qspace_asr", "provenance"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fc.born = None
    fc.frequencies([[0.1, 0, 0]])
    assert set(vars(fc)) == names  # nothing cached on it
    with pytest.raises(ValueError, match="provenance"):
        ForceConstants(sc, fc.fc, born, provenance="dft-ish")
