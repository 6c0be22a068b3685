"""The dataset pipeline for real (tiny LiF: 30 Ry, vc-relax at 2×2×2 k, isolated atoms, 16-atom rattled
supercells at Γ): kill mid-way and resume without recomputing finished samples; extxyz contents against
QE's printed values; unconverged SCF reported without losing other samples.

Runtime ~40 s on 2 busy cores.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dataset_helpers import lif_primitive, printed_ry, require_qe

pytestmark = pytest.mark.qe
ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "supercell": [2, 2, 2],
    "n_samples": 4,
    "seed": 7,
    "position_sigma": 0.05,
    "strain_sigma": 0.01,
    "relax": True,
    "press_conv_thr": 5.0,
    "relax_pw": {"ecutwfc": 60, "ecutrho": 240, "kpts": [2, 2, 2], "conv_thr": 1e-8},
    "pw": {"ecutwfc": 30, "ecutrho": 120, "kpts": [1, 1, 1], "gamma_only": True, "conv_thr": 1e-7},
    "isolated_atoms": True,
    "isolated_box": 5.0,
    "workers": 1,
    "nprocs_per_worker": 1,
}


def _write_inputs(tmp: Path, **over) -> Path:
    from ase.io import write
    write(str(tmp / "LiF.cif"), lif_primitive(4.0).to_ase())
    cfg = dict(TINY, structure=str(tmp / "LiF.cif"), out_dir=str(tmp / "out"), **over)
    p = tmp / "dataset.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _finished(out: Path) -> dict[int, tuple[int, int]]:
    """index → (mtime_ns of result.json, of scf.out) for every finished sample."""
    res = {}
    for d in sorted((out / "samples").glob("[0-9]*")):
        if (d / "result.json").is_file():
            res[int(d.name)] = ((d / "result.json").stat().st_mtime_ns, (d / "scf.out").stat().st_mtime_ns)
    return res


def test_kill_and_resume(tmp_path):
    require_qe("pw.x")
    from ase.io import read
    from phonjax.dataset import build_dataset, load_dataset_config

    cfg_path = _write_inputs(tmp_path)
    out = tmp_path / "out"
    code = ("from phonjax.dataset import build_dataset, load_dataset_config\n"
            f"build_dataset(load_dataset_config({str(cfg_path)!r}), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(_finished(out)) < 2 and proc.poll() is None:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pw.x child, mid-run
        proc.wait()
    before = _finished(out)
    assert len(before) >= 2, proc.stderr.read().decode()[-2000:]
    assert len(before) < 4, "the run finished before it could be killed"
    assert not (out / "dataset.extxyz").exists()

    # a corrupted marker counts as unfinished: that sample is recomputed, nothing else is
    corrupt = min(before)
    (out / "samples" / f"{corrupt:05d}" / "result.json").write_text("{not json")
    kept = {i: t for i, t in before.items() if i != corrupt}

    cfg = load_dataset_config(cfg_path)
    res = build_dataset(cfg, progress=False)
    assert not res.failed
    assert set(kept) <= set(res.reused)
    assert set(res.computed) == set(range(4)) - set(kept)
    after = _finished(out)
    for i, t in kept.items():
        assert after[i] == t, f"finished sample {i} was recomputed"

    frames = read(str(res.extxyz), index=":", format="extxyz")
    assert sorted(f.info["sample"] for f in frames) == [0, 1, 2, 3]
    assert res.n_samples == 4
    for f in frames:
        sd = out / "samples" / f"{f.info['sample']:05d}"
        text = (sd / "scf.out").read_text()
        assert f.get_potential_energy() == pytest.approx(printed_ry(text, "total energy") * 13.605693122994,
                                                         abs=1e-6)
        rows = re.findall(r"atom\s+\d+ type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)", text)[: len(f)]
        np.testing.assert_allclose(f.get_forces(), np.array(rows, float) * 25.711033738, atol=1e-6)
        ry_bohr3 = np.array([ln.split()[0:3] for ln in
                             text.split("total   stress")[-1].splitlines()[1:4]], float)
        np.testing.assert_allclose(f.get_stress(voigt=False), -ry_bohr3 * 13.605693122994 / 0.529177210903**3,
                                   atol=1e-6)  # ASE sign: minus QE's
        assert f.info["E0_Li"] < 0 and f.info["E0_F"] < 0
        assert len(f) == 16
    # rattled: strained cells and displaced atoms, reproducible from (seed, index)
    from phonjax.dataset.rattle import rattled_sample
    from phonjax.structure import make_supercell
    sc = make_supercell(res.unit_cell, np.diag([2, 2, 2])).crystal
    again = rattled_sample(sc, 7, 2, position_sigma=0.05, strain_sigma=0.01)
    f2 = next(f for f in frames if f.info["sample"] == 2)
    np.testing.assert_allclose(f2.positions, again.positions, atol=1e-8)
    assert not np.allclose(f2.cell.array, sc.cell)
    # relaxed unit cell differs from the input (the tiny cutoff relaxes the lattice)
    assert not np.allclose(res.unit_cell.cell, lif_primitive(4.0).cell, atol=1e-3)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n_samples_written"] == 4 and set(meta["isolated_energies_ev"]) == {"Li", "F"}
    assert meta["pseudopotentials"]["files"]["F"]["pseudo_type"] == "NC"


def test_unconverged_sample_is_reported_not_written(tmp_path, capsys):
    require_qe("pw.x")
    from phonjax.dataset import build_dataset, load_dataset_config
    cfg_path = _write_inputs(tmp_path, n_samples=1, relax=False, isolated_atoms=False,
                             pw=dict(TINY["pw"], electron_maxstep=1, conv_thr=1e-12))
    res = build_dataset(load_dataset_config(cfg_path), progress=False)
    assert list(res.failed) == [0] and "did not converge" in res.failed[0]
    assert res.n_samples == 0
    sd = tmp_path / "out" / "samples" / "00000"
    assert (sd / "scf.out").is_file() and (sd / "scf.in").is_file() and not (sd / "result.json").exists()
    assert "failed" in capsys.readouterr().out
