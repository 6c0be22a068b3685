"""Issue 19's table of bad inputs, as a new user meets them: each row runs the command line as a subprocess (exit
code + message), plus in-process checks of what the message promises (the primitive cell gives the same
frequencies, the progress path gives the same force constants without recompiling, files survive a failed
comparison). One full CLI run on a tiny model; the other CLI runs stop before or at the force constants."""
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

import phonjax  # noqa: F401
from phonjax.potentials import rock_salt_potential

ROOT = Path(__file__).resolve().parents[1]
POT = rock_salt_potential(4.03, "Li", "F")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "phonjax.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def lines(stderr: str) -> list[str]:
    """stderr as a terminal shows it (a carriage return starts the line over)."""
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig

    d = tmp_path_factory.mktemp("bad_inputs")
    # one scalar layer: the cheapest model to compile (the CLI's behaviour, not the model, is under test)
    cfg = ModelConfig(type_names=("Li", "F"), r_max=2.3, feature_irreps_hidden=("4x0e",),
                      radial_mlp_depth=(1,), radial_mlp_width=(8,), avg_num_neighbors=6.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    Model.init(cfg, seed=3).save(d / "model")
    bulk("LiF", "rocksalt", a=4.03).write(d / "LiF.cif")
    conv = bulk("LiF", "rocksalt", a=4.03, cubic=True)
    conv.write(d / "LiF_conv.cif")
    # BORN for the 8-atom conventional cell, Σ Z* = 0.08 e per primitive cell (Li +1.09, F −1.01)
    zs = [1.09 if s == "Li" else -1.01 for s in conv.get_chemical_symbols()]
    (d / "BORN").write_text("14.4\n2.0 0 0 0 2.0 0 0 0 2.0\n" + "".join(f"{z} 0 0 0 {z} 0 0 0 {z}\n" for z in zs))
    # a band.yaml whose frequencies are all zero
    ph = "".join(f"- q-position: [{q}, 0.0, 0.0]\n  distance: {q}\n  band:\n"
                 + "".join("  - frequency: 0.0\n" for _ in range(6)) for q in (0.0, 0.25, 0.5))
    (d / "zero_band.yaml").write_text(f"nqpoint: 3\nnpath: 1\nsegment_nqpoint: [3]\nphonon:\n{ph}")
    return d


# -- row: --supercell 1 2 (and the other argument types) ------------------------------------------------
def test_supercell_count_is_a_usage_error(files):
    r = run_cli("predict", files / "LiF.cif", "--model", files / "model", "--supercell", "1", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert lines(r.stderr)[-1].startswith("phonjax predict: error: argument --supercell: takes 1, 3 or 9 integers")


@pytest.mark.parametrize("argv, where", [
    (["predict", "x.cif", "--npoints", "0"], "argument --npoints: must be an integer >= 2"),
    (["predict", "x.cif", "--edge-chunk", "-1"], "argument --edge-chunk: must be an integer >= 0"),
    (["predict", "x.cif", "--ewald-lambda", "-0.3"], "argument --ewald-lambda: must be a positive number"),
    (["predict", "x.cif", "--supercell", "2", "2", "2", "2"], "argument --supercell: takes 1, 3 or 9"),
    (["dataset", "c.yaml", "--workers", "0"], "argument --workers: must be an integer >= 1"),
    (["finetune", "c.yaml", "--set", "lr"], "argument --set: expected KEY=VALUE"),
])
def test_argument_types_are_usage_errors(argv, where, capsys):
    from phonjax.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert where in capsys.readouterr().err.strip().splitlines()[-1]


# -- rows: polar crystal without --born; "supercell too small" names the CLI flag --------------------------
def test_polar_warning_and_small_supercell_flag(files):
    r = run_cli("predict", files / "LiF.cif", "--model", files / "model", "--supercell", "1", "--out", files / "o1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    ls = lines(r.stderr)
    warn = [ln for ln in ls if ln.startswith("phonjax: warning: no Born charges")]
    assert len(warn) == 1 and "LO–TO" in warn[0] and "--born" in warn[0] and "phonjax dfpt" in warn[0]
    assert ls[-1].startswith("phonjax: error: supercell too small")
    assert "--allow-small-supercell" in ls[-1] and "allow_small_supercell" not in r.stderr


def test_polar_warning_recorded_not_for_elements_or_with_born(tmp_path):
    from phonjax.checks import polar_without_born
    from phonjax.predict import predict
    from phonjax.structure import Crystal

    with pytest.warns(UserWarning, match="no Born charges"):
        res = predict(bulk("LiF", "rocksalt", a=4.03), POT, 1, npoints=3, out_dir=tmp_path, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lr"] == "none" and "LO–TO" in summary["long_range_warning"]
    assert res.extra["long_range_warning"] == summary["long_range_warning"]
    assert not polar_without_born(Crystal.from_ase(bulk("Si", "diamond", a=5.43)))       # element
    assert not polar_without_born(Crystal.from_ase(bulk("NiAl", "cesiumchloride", a=2.88)))  # intermetallic
    assert polar_without_born(Crystal.from_ase(bulk("GaAs", "zincblende", a=5.65)))


# -- rows: conventional cell, non-neutral BORN, progress (one full run) ------------------------------------
def test_conventional_cell_nonneutral_born_progress(files):
    out = files / "o_conv"
    r = run_cli("predict", files / "LiF_conv.cif", "--model", files / "model", "--born", files / "BORN",
                "--supercell", "1", "1", "1", "--allow-small-supercell", "--lr", "none", "--npoints", "3",
                "--out", out)
    assert r.returncode == 0, r.stderr
    ls = lines(r.stderr)
    assert all(ln.startswith("phonjax: ") for ln in ls), ls  # progress and messages each on their own line
    note = [ln for ln in ls if ln.startswith("phonjax: note:")]
    assert len(note) == 1 and "not a primitive cell (8 atoms)" in note[0] and "2-atom primitive" in note[0]
    warn = [ln for ln in ls if ln.startswith("phonjax: warning:")]
    assert len(warn) == 1 and "not neutral" in warn[0] and "0.08 e" in warn[0]
    s = json.loads((out / "summary.json").read_text())
    assert s["primitive_reduction"]["input_atoms"] == 8 and s["primitive_reduction"]["primitive_atoms"] == 2
    assert s["n_atoms_supercell"] == 8 and len(s["gamma_frequencies_THz"]) == 6  # the same supercell, 6 branches
    nc = s["born_neutrality_correction"]
    assert abs(nc["charge_sum_e"] - 0.08) < 1e-9 and abs(nc["per_atom_correction_e"] - 0.04) < 1e-9
    # progress: stages in order, HVP batches counted up to the total (here one batch: all directions fit)
    stages = [ln.split("] ", 1)[1] for ln in ls if "] " in ln]
    hvp = [s for s in stages if s.startswith("force constants: ")]
    done = [int(s.split(": ")[1].split("/")[0]) for s in hvp]
    total = int(hvp[-1].split("/")[1].split()[0])
    assert done == sorted(done) and done[-1] == total >= 2
    order = [next(i for i, s in enumerate(stages) if s.startswith(k))
             for k in ("model", "force constants (compiling", "force constants: ", "bands", "writing")]
    assert order == sorted(order)
    assert "Traceback" not in r.stderr


def test_primitive_reduction_gives_the_primitive_dispersion(tmp_path):
    """A conventional cell and its supercell spec → the same frequencies as the primitive cell with the
    translated supercell; the reduced cell is a basis of the fcc lattice in the same Cartesian frame."""
    from phonjax.checks import reduce_to_primitive
    from phonjax.force_constants import force_constants
    from phonjax.predict import predict
    from phonjax.structure import Crystal

    conv = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03, cubic=True))
    prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
    red = reduce_to_primitive(conv)
    assert red.primitive_atoms == 2 and round(abs(np.linalg.det(red.to_input))) == 4
    u = red.primitive.cell @ np.linalg.inv(prim.cell)  # same lattice: integer, unimodular
    assert np.abs(u - np.round(u)).max() < 1e-9 and round(abs(np.linalg.det(u))) == 1
    assert reduce_to_primitive(prim) is None
    with pytest.warns(UserWarning, match="not a primitive cell"):
        res = predict(conv, POT, 1, npoints=3, out_dir=tmp_path, progress=False, lr="none")
    M = red.supercell_for(1)
    ref = force_constants(POT, prim, M)
    q = res.band.qpoints  # reduced coordinates of the primitive cell actually used
    qc = q @ np.linalg.inv(res.force_constants.primitive.cell).T  # Cartesian (no 2π)
    f_ref = ref.frequencies(qc @ prim.cell.T, lr="none")
    sq = lambda f: f * np.abs(f)  # noqa: E731  (eigenvalues, THz²: √ amplifies rounding of zero modes at Γ)
    assert np.abs(sq(res.band.frequencies) - sq(f_ref)).max() < 1e-8
    kept = predict(conv, POT, 1, npoints=3, out_dir=tmp_path / "kept", progress=False, primitive=False, lr="none")
    assert kept.band.frequencies.shape[1] == 24  # --no-primitive: the folded 8-atom cell


# -- row: the force-constant step's progress --------------------------------------------------------------
def test_progress_batches_same_result_one_compilation():
    """Progress follows the memory plan's batches (one vmapped call when all directions fit: they share the
    forward pass) and an explicit chunk_size's equal-shape batches: one compilation, the same force constants."""
    import importlib
    F = importlib.import_module("phonjax.force_constants")  # the module (the package exports the function)

    crystal = bulk("LiF", "rocksalt", a=4.03)
    plain = F.force_constants(POT, crystal, 2, symmetry=False)
    for chunk, want in (("auto", [0, 6]), (2, [0, 2, 4, 6]), (4, [0, 4, 6])):
        calls = []
        n0 = F.hvp_kernel._cache_size()
        prog = F.force_constants(POT, crystal, 2, symmetry=False, chunk_size=chunk,
                                 progress=lambda d, t: calls.append((d, t)))
        assert F.hvp_kernel._cache_size() - n0 <= 1  # every batch has the same shape: one compilation
        assert np.abs(prog.fc - plain.fc).max() < 1e-10
        assert calls == [(d, 6) for d in want]


def test_progress_heartbeat_moves_inside_one_long_call(capsys):
    """A stage without news (compiling, one long vmapped kernel call) still reports, with growing elapsed time."""
    import time
    from phonjax.progress import Progress

    with Progress(True, heartbeat_s=0.2) as bar:
        bar.directions(0, 2)
        time.sleep(1.0)
        bar.directions(2, 2)
    ls = lines(capsys.readouterr().err)
    beats = [ln for ln in ls if "still working" in ln]
    assert len(beats) >= 2 and all(ln.startswith("phonjax: [") for ln in ls), ls
    secs = [float(ln.split("] ", 1)[0].split("[")[1].split()[0]) for ln in beats]
    assert secs == sorted(secs) and secs[-1] > secs[0]
    assert ls[-1].endswith("force constants: 2/2 Hessian-vector products")


# -- row: one model cache for make demo and the CLI --------------------------------------------------------
def test_make_demo_uses_the_cli_model_cache(tmp_path, monkeypatch):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    from phonjax.defaults import default_model_dir

    for k in ("PHONJAX_MODEL", "XDG_CACHE_HOME", "MODEL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for env in ({}, {"PHONJAX_MODEL": str(tmp_path / "mine")}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        want = str(default_model_dir())  # where `phonjax predict` without --model looks
        out = subprocess.run(["make", "-n", "-C", str(ROOT), "demo"], capture_output=True, text=True).stdout
        assert f"convert sevennet --out {want}" in out and f"--model {want} " in out, out


# -- row: a reference band.yaml with all frequencies zero --------------------------------------------------
def test_zero_reference_refused_before_computing(files):
    out = files / "o_ref"
    r = run_cli("predict", files / "LiF.cif", "--model", files / "model", "--supercell", "2",
                "--reference", files / "zero_band.yaml", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    ls = lines(r.stderr)
    assert ls[-1].startswith("phonjax: error: reference") and "all frequencies are zero" in ls[-1]
    assert not any("force constants" in ln for ln in ls) and not out.exists()


def test_reference_checks_and_results_survive_a_failed_comparison(tmp_path, monkeypatch):
    from phonjax import compare
    from phonjax.checks import check_reference
    from phonjax.predict import predict

    predict(bulk("LiF", "rocksalt", a=4.03), POT, 2, npoints=3, out_dir=tmp_path / "a", progress=False, lr="none")
    ref = compare.read_band_yaml(tmp_path / "a" / "band.yaml")
    check_reference(ref, 6, "a")
    with pytest.raises(ValueError, match="has 6 branches, the primitive cell 24"):
        check_reference(ref, 24, "a")

    def boom(*a, **k):
        raise RuntimeError("comparison failed")
    monkeypatch.setattr(compare, "compare_bands", boom)
    with pytest.raises(RuntimeError):
        predict(bulk("LiF", "rocksalt", a=4.03), POT, 2, out_dir=tmp_path / "b", progress=False, lr="none",
                reference=tmp_path / "a" / "band.yaml")
    from phonopy.file_IO import read_force_constants_hdf5
    fc = read_force_constants_hdf5(tmp_path / "b" / "force_constants.hdf5")  # computed results kept
    assert np.abs(fc - read_force_constants_hdf5(tmp_path / "a" / "force_constants.hdf5")).max() < 1e-10
