"""Many structures per run (issue 17, item 2): a directory with good, multi-frame and broken inputs; one folder per
structure, summary.jsonl, failures recorded while the run goes on, resume skips finished structures, and the
results equal single-structure runs; the CLI takes several structures and exits 1 when one failed."""
import json
from pathlib import Path
import subprocess
import sys

import ase.io
from ase.build import bulk
import numpy as np
import pytest

from phonjax.potentials import rock_salt_potential

POT = rock_salt_potential(4.03, "Li", "F")
OPTS = dict(npoints=3, lr="none", allow_small_supercell=True, progress=False)


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "structures"
    d.mkdir()
    bulk("LiF", "rocksalt", a=4.03).write(d / "LiF.cif")
    frames = [bulk("LiF", "rocksalt", a=a) for a in (3.98, 4.08)]
    ase.io.write(d / "strained.extxyz", frames)
    (d / "broken.cif").write_text("this is not a CIF file\n")
    bulk("NaCl", "rocksalt", a=5.6).write(d / "NaCl.cif")  # elements the potential does not know
    (d / "BORN").write_text("not read: Born files in a directory are data, not structures\n")
    return d


def test_directory_run_records_failures_resumes_and_matches_single_runs(inputs, tmp_path):
    from phonjax.predict import predict
    from phonjax.predict_many import SUMMARY_JSONL, predict_many

    out = tmp_path / "out"
    res = predict_many([inputs], POT, 2, out_dir=out, **OPTS)
    st = {r["name"]: r["status"] for r in res.records}
    assert st == {"LiF": "ok", "NaCl": "failed", "broken": "failed", "strained_0": "ok", "strained_1": "ok"}
    err = {r["name"]: r["error"] for r in res.records if r["status"] == "failed"}
    assert "cannot read broken.cif" in err["broken"] and "[11, 17]" in err["NaCl"]
    log = [json.loads(x) for x in (out / SUMMARY_JSONL).read_text().splitlines()]
    assert [r["name"] for r in log] == [r["name"] for r in res.records]
    for name in ("LiF", "strained_0", "strained_1"):
        assert (out / name / "band.yaml").is_file() and (out / name / "summary.json").is_file()
    # the same numbers as a single-structure run of the second frame
    single = predict(bulk("LiF", "rocksalt", a=4.08), POT, 2, out_dir=tmp_path / "single", **OPTS)
    from phonjax.io.band_yaml import read_band_yaml
    got = read_band_yaml(out / "strained_1" / "band.yaml").frequencies
    want = read_band_yaml(tmp_path / "single" / "band.yaml").frequencies
    assert got.shape == want.shape == single.band.frequencies.shape and np.abs(got - want).max() < 1e-9
    # resume: finished structures are skipped, failed ones are tried again, the log grows by one line each
    again = predict_many([inputs], POT, 2, out_dir=out, **OPTS)
    st2 = {r["name"]: r["status"] for r in again.records}
    assert st2 == {"LiF": "skipped", "NaCl": "failed", "broken": "failed", "strained_0": "skipped",
                   "strained_1": "skipped"}
    assert len((out / SUMMARY_JSONL).read_text().splitlines()) == 10


def test_unknown_option_and_missing_path_are_refused(inputs, tmp_path):
    from phonjax.predict_many import predict_many
    with pytest.raises(TypeError, match="npoint"):
        predict_many([inputs], POT, 2, out_dir=tmp_path / "o", npoint=3)
    with pytest.raises(FileNotFoundError, match="nope"):
        predict_many([tmp_path / "nope"], POT, 2, out_dir=tmp_path / "o")


def test_cli_several_structures(inputs, tmp_path):
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig

    cfg = ModelConfig(type_names=("Li", "F"), r_max=2.3, feature_irreps_hidden=("4x0e",),
                      radial_mlp_depth=(1,), radial_mlp_width=(8,), avg_num_neighbors=6.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    Model.init(cfg, seed=3).save(tmp_path / "model")
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "phonjax.cli", "predict", str(inputs / "LiF.cif"),
                        str(inputs / "broken.cif"), "--model", str(tmp_path / "model"), "--supercell", "1",
                        "--allow-small-supercell", "--lr", "none", "--npoints", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "2 structures: 1 done, 0 skipped (finished earlier), 1 failed" in r.stdout
    assert any(ln.startswith("phonjax: error: broken:") for ln in r.stderr.splitlines())
    assert (out / "LiF" / "band.yaml").is_file()


def test_cli_empty_directory_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "phonjax.cli", "predict", str(tmp_path / "empty"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"phonjax: error: no structure files in {tmp_path / 'empty'}"
