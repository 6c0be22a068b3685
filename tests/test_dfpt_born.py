"""`phonjax born` (ε∞, Z* from a Γ-only ph.x run), the denser k-grid for ε∞/Z* in `phonjax dfpt`, the
neutrality warning, and resumable QE steps.

The QE cases are tiny LiF runs (30 Ry, 2³/3³ k, 1 MPI rank; ~20 s together); the rest needs no QE.
"""
from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from dataset_helpers import lif_primitive, require_qe, tiny_pw

ROOT = Path(__file__).resolve().parents[1]
MGO_DYN1 = ROOT / "examples" / "MgO" / "dfpt" / "qe" / "MgO.dyn1"


def test_patch_dyn_dielectric_round_trip():
    from phonjax.dataset.dielectric import patch_dyn_dielectric
    from phonjax.io.qe import parse_dyn_dielectric
    text = MGO_DYN1.read_text()
    rng = np.random.default_rng(0)
    eps = np.eye(3) * 3.1 + 0.01 * rng.normal(size=(3, 3))
    z = rng.normal(size=(2, 3, 3))
    out = patch_dyn_dielectric(text, eps, z)
    e2, z2 = parse_dyn_dielectric(out)
    np.testing.assert_allclose(e2, eps, atol=1e-11)
    np.testing.assert_allclose(z2, z, atol=1e-11)
    # the U-E block holds the transpose; the dynamical matrix itself is untouched
    ue = out.split("Effective Charges U-E", 1)[1].splitlines()[3:6]
    np.testing.assert_allclose(np.array([r.split() for r in ue], float), z[0].T, atol=1e-11)
    assert out.split("Dielectric Tensor", 1)[0] == text.split("Dielectric Tensor", 1)[0]
    with pytest.raises(ValueError, match="no dielectric tensor"):
        patch_dyn_dielectric("Dynamical matrix file\n", eps, z)


def test_neutrality_warns_and_records():
    from phonjax.dataset.dielectric import neutral
    z = np.array([np.eye(3) * 1.10, -np.eye(3) * 1.02])
    with pytest.warns(UserWarning, match=r"neutrality by 0\.080 e"):
        d = neutral(np.eye(3) * 2.0, z, source="test")
    assert d.violation == pytest.approx(0.08)
    np.testing.assert_allclose(d.zstar.sum(axis=0), 0, atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neutral(np.eye(3), np.array([np.eye(3), -np.eye(3) * (1 + 5e-4)]))  # below the threshold: quiet


def _fake_exe(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in QE executable on PATH that records each input it was run on and prints JOB DONE."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "fake.x"
    exe.write_text('#!/bin/sh\ncat "$2" >> "$(dirname "$0")/calls"\necho "   JOB DONE."\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir / "calls"


def test_run_qe_resume_skips_finished_and_recovers_killed(tmp_path, monkeypatch):
    from phonjax.dataset.runner import run_qe
    calls = _fake_exe(tmp_path, monkeypatch)
    wd = tmp_path / "w"
    run_qe("fake.x", "input A\n", wd, "step", resume=True)
    assert json.loads((wd / "step.done.json").read_text())["input_sha256"]
    run_qe("fake.x", "input A\n", wd, "step", resume=True)         # done with the same input: skipped
    assert calls.read_text() == "input A\n"
    run_qe("fake.x", "input B\n", wd, "step", resume=True)         # another input: run again
    assert calls.read_text() == "input A\ninput B\n"
    run_qe("fake.x", "input B\n", wd, "step")                      # no resume: always runs
    assert calls.read_text().count("input B") == 2
    # a killed run (marker gone, partial output left) restarts from the recover input, then counts as done
    (wd / "step.done.json").unlink()
    (wd / "step.out.partial").write_text("half")
    run_qe("fake.x", "input B\n", wd, "step", resume=True, recover_text="input B recover\n")
    assert calls.read_text().endswith("input B recover\n") and (wd / "step.out.killed").read_text() == "half"
    run_qe("fake.x", "input B\n", wd, "step", resume=True, recover_text="input B recover\n")
    assert calls.read_text().count("recover") == 1


@pytest.mark.qe
def test_born_matches_full_dfpt_and_dense_k_reaches_q2r(tmp_path):
    """run_born's Γ-only ε∞/Z* equal those of the full q-grid run at the same k (QE's own numbers); with
    epsil_kpts the denser-k values are what q2r/matdyn use: LO(Γ) follows the rigid-ion formula with them."""
    require_qe("pw.x", "ph.x", "q2r.x", "matdyn.x")
    from phonjax.compare import gamma_indices, read_band_yaml
    from phonjax.dataset import DfptConfig, run_born, run_dfpt
    from phonjax.io.qe import parse_dyn_dielectric
    from test_dfpt import lo_from_to

    crystal = lif_primitive(4.0)
    cfg = DfptConfig(pw=tiny_pw(conv_thr=1e-12), relax=False, qgrid=(1, 1, 1), npoints=24, nprocs=1, npool=1,
                     prefix="t", tr2_ph=1e-14)
    full = run_dfpt(crystal, cfg, tmp_path / "full")
    eps_q, z_q = parse_dyn_dielectric((tmp_path / "full" / "qe" / "t.dyn1").read_text())
    born = run_born(crystal, cfg, tmp_path / "born")
    np.testing.assert_allclose(born.epsilon, eps_q, atol=2e-6)
    np.testing.assert_allclose(born.zstar_raw, z_q, atol=5e-6)  # ph.x prints Z* with 5 decimals here
    assert (tmp_path / "born" / "BORN").is_file() and json.loads((tmp_path / "born" / "born.json").read_text())

    dense = DfptConfig(**{**cfg.__dict__, "epsil_kpts": (3, 3, 3)})
    res = run_dfpt(crystal, dense, tmp_path / "dense")
    b3 = run_born(crystal, dense, tmp_path / "born3")
    np.testing.assert_allclose(res.epsilon, b3.epsilon, atol=2e-6)
    assert abs(res.epsilon[0, 0] - full.epsilon[0, 0]) > 1e-3  # the k-grid matters at this tiny setting
    band = read_band_yaml(tmp_path / "dense" / "band.yaml")
    f = np.sort(band.frequencies[gamma_indices(band.qpoints)[0]])
    lo = lo_from_to(f[3], res.epsilon[0, 0], res.zstar[0, 0, 0], crystal.volume, crystal.masses)
    assert f[5] == pytest.approx(lo, rel=2e-3)
    # rerunning finishes from the recorded steps without running pw.x/ph.x again
    again = run_dfpt(crystal, dense, tmp_path / "dense")
    assert again.timings["ph"] == res.timings["ph"]
    np.testing.assert_allclose(again.band.frequencies, res.band.frequencies, atol=1e-9)
