"""DFPT q-points as Dask tasks (issue 17, item 3): one ph.x per irreducible q-point on a local Dask cluster gives
the same dynamical matrices, force constants and band structure as QE's one-process q-grid run, resumes
without redoing finished q-points, and the CLI's --workers selects it.

Tiny LiF (30 Ry, k 2³, q 2³: 3 irreducible q-points, ~1–2 s each at 1 MPI rank); runtime ~20 s with QE.
"""
from __future__ import annotations

import numpy as np
import pytest

from phonjax.dataset.dfpt_split import irreducible_q_count
from phonjax.dataset.runner import QERunError
from phonjax.io.band_yaml import read_band_yaml

from dataset_helpers import lif_primitive, require_qe, tiny_dfpt


def _numbers(path) -> np.ndarray:
    """Every number of a QE text file (dynamical matrix, q2r force constants) in order; of a dynamical-matrix
    file only the matrices, not its diagonalisation (whose eigenvectors within a degenerate pair are any basis)."""
    out = []
    text = path.read_text().split("Diagonalizing the dynamical matrix")[0]
    for tok in text.replace("(", " ").replace(")", " ").split():
        try:
            out.append(float(tok.replace("D", "E")))
        except ValueError:
            pass
    return np.array(out)


@pytest.mark.qe
def test_split_q_equals_one_process_run_and_resumes(tmp_path):
    require_qe("pw.x", "ph.x", "q2r.x", "matdyn.x")
    from dataclasses import replace

    from phonjax.dataset import run_dfpt

    cfg = tiny_dfpt((2, 2, 2))
    crystal = lif_primitive(4.0)
    one = run_dfpt(crystal, cfg, tmp_path / "one")
    # the split run through the CLI: --workers selects one ph.x per q-point on a local Dask cluster
    from phonjax.config import to_dict
    from phonjax.io.structure import write_poscar
    import json
    import subprocess
    import sys
    import yaml
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(to_dict(cfg)))))
    write_poscar(tmp_path / "POSCAR", crystal, "LiF")
    p = subprocess.run([sys.executable, "-m", "phonjax.cli", "dfpt", str(tmp_path / "POSCAR"), "--config",
                        str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "split"), "--workers", "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    split = json.loads((tmp_path / "split" / "dfpt.json").read_text())
    assert split["config"]["split_q"] is True and split["config"]["workers"] == 2
    qe1, qe2 = tmp_path / "one" / "qe", tmp_path / "split" / "qe"
    assert (qe2 / "t.dyn0").read_text() == (qe1 / "t.dyn0").read_text()
    nq = irreducible_q_count((qe1 / "t.dyn0").read_text())
    assert nq == 3
    for i in range(1, nq + 1):  # the same matrices (printed to QE's 8 digits; −0.0 vs 0.0 aside)
        a, b = _numbers(qe1 / f"t.dyn{i}"), _numbers(qe2 / f"t.dyn{i}")
        assert a.shape == b.shape and np.abs(a - b).max() < 2e-8, i
        assert (qe2 / f"q{i}" / "result.json").is_file() and not (qe2 / f"q{i}" / "tmp").exists()
    a, b = _numbers(tmp_path / "one" / "t.fc"), _numbers(tmp_path / "split" / "t.fc")
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-7
    f1 = read_band_yaml(tmp_path / "one" / "band.yaml").frequencies
    f2 = read_band_yaml(tmp_path / "split" / "band.yaml").frequencies
    assert np.abs(f1 - f2).max() < 1e-4 and f1.max() > 5.0  # THz, matdyn prints 1e-4 cm⁻¹-level digits
    assert np.allclose(one.epsilon, split["epsilon_inf"]) and np.allclose(one.zstar, split["zstar"])
    assert any(k.startswith("ph (sum over 3") for k in split["timings_s"])
    # resume: a lost q-point (its folder gone; the scf scratch was removed at the end, so the scf runs again)
    # is the only ph.x run again, and a q-point whose dyn file alone was lost is redone too
    import shutil
    done = {i: (qe2 / f"q{i}" / "ph.out").stat().st_mtime_ns for i in range(1, nq + 1)}
    shutil.rmtree(qe2 / "q2")
    (qe2 / "q3" / "t.dyn3").unlink()
    (qe2 / "q3" / "result.json").unlink()
    (tmp_path / "split" / "band.yaml").unlink()
    run_dfpt(crystal, replace(cfg, split_q=True, workers=2), tmp_path / "split")
    again = {i: (qe2 / f"q{i}" / "ph.out").stat().st_mtime_ns for i in range(1, nq + 1)}
    assert again[1] == done[1] and again[2] != done[2] and again[3] != done[3]
    assert np.abs(read_band_yaml(tmp_path / "split" / "band.yaml").frequencies - f1).max() < 1e-4


def test_q_count_reader_refuses_garbage():
    assert irreducible_q_count("   4   4   4\n   8\n 0 0 0\n") == 8
    for bad in ("", "4 4 4\n", "4 4 4\nx\n", "4 4 4\n0\n"):
        with pytest.raises(QERunError):
            irreducible_q_count(bad)
