"""The command line: exit codes, one-line errors, and files a user (and phonopy) can read back."""
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import yaml

from phonjax.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "phonjax.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    r = run_cli("predict", tmp_path / "missing.cif", "--model", tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "structure file not found" in r.stderr
    bad = tmp_path / "BORN"
    bad.write_text("garbage\n1 2 3\n")
    r = run_cli("bands", "--phonopy", tmp_path / "nope.yaml", "--born", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_bands_from_phonopy_nacl_gonze(phonopy_examples, tmp_path):
    phonopy = pytest.importorskip("phonopy")
    d = phonopy_examples / "NaCl"
    out = tmp_path / "out"
    assert main(["bands", "--phonopy", str(d / "phonopy_disp.yaml"), "--born", str(d / "BORN"),
                 "--lr", "gonze", "--npoints", "11", "--out", str(out)]) == 0
    for name in ("band.png", "band.yaml", "force_constants.hdf5", "summary.json"):
        assert (out / name).is_file(), name
    band = yaml.safe_load((out / "band.yaml").read_text())
    q = np.array([p["q-position"] for p in band["phonon"]])
    f = np.array([[b["frequency"] for b in p["band"]] for p in band["phonon"]])
    # phonopy's own Gonze-Lee frequencies on the same q-points (Γ approached along the path direction)
    ph = phonopy.load(d / "phonopy_disp.yaml", force_sets_filename=d / "FORCE_SETS", born_filename=d / "BORN")
    off_gamma = np.linalg.norm(q, axis=1) > 1e-8
    ph.run_qpoints(q[off_gamma])
    ref = ph.qpoints.frequencies
    assert np.abs(f[off_gamma] - ref).max() < 1e-4
    # the force constants file is readable by phonopy
    from phonopy.file_IO import read_force_constants_hdf5
    fc = read_force_constants_hdf5(out / "force_constants.hdf5")
    assert fc.ndim == 4 and fc.shape[2:] == (3, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lr"] == "gonze"


def test_predict_with_a_saved_model(tmp_path):
    from ase.build import bulk

    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig

    cfg = ModelConfig(type_names=("Li", "F"), r_max=2.3, feature_irreps_hidden=("4x0e+4x1o", "4x0e"),
                      radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=6.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    Model.init(cfg, seed=3).save(tmp_path / "model")
    bulk("LiF", "rocksalt", a=4.03).write(tmp_path / "LiF.cif")
    out = tmp_path / "out"
    # a supercell narrower than the cutoff sphere is refused
    assert main(["predict", str(tmp_path / "LiF.cif"), "--model", str(tmp_path / "model"), "--supercell", "1",
                 "--out", str(out)]) == 2
    assert main(["predict", str(tmp_path / "LiF.cif"), "--model", str(tmp_path / "model"), "--supercell", "2",
                 "--npoints", "9", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "band.png").stat().st_size > 1000
    band = yaml.safe_load((out / "band.yaml").read_text())
    f = np.array([[b["frequency"] for b in p["band"]] for p in band["phonon"]])
    # acoustic sum rule at Γ (first path point); an untrained model may have imaginary optical modes
    assert f.shape[1] == 6 and np.sort(np.abs(f[0]))[:3].max() < 1e-6
    assert summary["n_atoms_supercell"] == 16 and len(summary["gamma_frequencies_THz"]) == 6


def test_default_supercell_rules(tmp_path):
    """Without --supercell, predict takes the smallest N³ whose width (distance between opposite faces; a/√3 for
    a rock-salt primitive cell) reaches the receptive field layers·r_max, or 2·r_max with --supercell-rule cutoff;
    the default (auto) is the cutoff rule where lr='auto' resolves to recip-auto (a model with Born data)."""
    from ase.build import bulk

    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig
    from phonjax.predict import default_supercell
    from phonjax.structure import Crystal

    prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))  # width 4.03/√3 = 2.327 Å
    assert default_supercell(prim, 5.0, rule="cutoff")[0, 0] == 5  # ⌈10/2.327⌉
    assert default_supercell(prim, 5.0, layers=5, rule="receptive")[0, 0] == 11  # ⌈25/2.327⌉
    assert default_supercell(prim, 5.0, layers=1, rule="receptive")[0, 0] == 5  # never below the cutoff rule
    assert default_supercell(prim, 5.0, layers=None, rule="receptive")[0, 0] == 5
    with pytest.raises(ValueError, match="supercell rule"):
        default_supercell(prim, 5.0, rule="biggest")
    # each axis on its own: wurtzite AlN, in-plane width a·sin 120° = 2.708 Å, along c 5.013 Å
    wz = Crystal.from_ase(bulk("AlN", "wurtzite", a=3.127, c=5.013))
    # ⌈10/2.708⌉, ⌈10/5.013⌉
    np.testing.assert_array_equal(default_supercell(wz, 5.0, rule="cutoff"), np.diag([4, 4, 2]))
    np.testing.assert_array_equal(default_supercell(wz, 5.0, layers=5, rule="receptive"), np.diag([10, 10, 5]))
    cfg = ModelConfig(type_names=("Li", "F"), r_max=2.3, feature_irreps_hidden=("4x0e+4x1o", "4x0e+2x1o", "4x0e"),
                      radial_mlp_depth=(1, 1, 1), radial_mlp_width=(8, 8, 8), avg_num_neighbors=6.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    Model.init(cfg, seed=3).save(tmp_path / "model")
    bulk("LiF", "rocksalt", a=4.03).write(tmp_path / "LiF.cif")
    # 3 layers: receptive ⌈6.9/2.327⌉ = 3, cutoff ⌈4.6/2.327⌉ = 2; auto: cutoff where lr resolves to recip-auto
    born = ROOT / "examples" / "LiF" / "BORN"
    for name, extra, n, rule in (("cutoff", ["--supercell-rule", "cutoff"], 2, "cutoff"),
                                 ("auto-no-born", [], 3, "receptive"),
                                 ("auto-born", ["--born", str(born)], 2, "cutoff")):
        out = tmp_path / name
        assert main(["predict", str(tmp_path / "LiF.cif"), "--model", str(tmp_path / "model"), "--npoints", "5",
                     "--out", str(out)] + extra) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n_atoms_supercell"] == 2 * n ** 3 and summary["supercell_rule"] == rule, name
    from phonjax.longrange.policy import supercell_rule
    assert [supercell_rule("auto", m) for m in ("recip-auto", "gonze", "ewald", "none")] == \
        ["cutoff", "receptive", "receptive", "receptive"]
    assert supercell_rule("receptive", "recip-auto") == "receptive"
    from phonjax.predict import predict
    with pytest.raises(ValueError, match="supercell rule"):
        predict(tmp_path / "LiF.cif", tmp_path / "model", supercell_rule="biggest", progress=False)
