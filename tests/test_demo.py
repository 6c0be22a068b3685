"""The README's main job (`make demo`) in a reduced form: SevenNet-0 converted from the installed `sevenn`,
LiF with the shipped QE Born charges, the dispersion's physics asserted (not its numbers)."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from phonjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
LIF = ROOT / "examples" / "LiF"


@pytest.mark.torch
def test_demo_lif_with_sevennet0(tmp_path):
    pytest.importorskip("sevenn")
    pytest.importorskip("torch")
    model_dir = tmp_path / "sevennet-0"
    assert main(["convert", "sevennet", "7net-0", "--out", str(model_dir)]) == 0  # cheaper than the default
    out = tmp_path / "demo"
    # 4×4×4 (128 atoms) is narrower than SevenNet's 10 Å cutoff sphere: refused unless explicitly allowed
    args = ["predict", str(LIF / "POSCAR"), "--model", str(model_dir), "--born", str(LIF / "BORN"),
            "--supercell", "4", "4", "4", "--npoints", "15", "--out", str(out)]
    assert main(args) == 2
    assert main(args + ["--allow-small-supercell"]) == 0
    band = yaml.safe_load((out / "band.yaml").read_text())
    q = np.array([p["q-position"] for p in band["phonon"]])
    f = np.array([[b["frequency"] for b in p["band"]] for p in band["phonon"]])
    gamma = np.flatnonzero(np.linalg.norm(q, axis=1) < 1e-9)
    assert len(gamma) >= 1
    for g in gamma:
        fg = np.sort(f[g])
        assert np.abs(fg[:3]).max() < 1e-3           # acoustic branches vanish at Γ
        assert fg[5] > fg[3] + 5.0                   # LO above TO at Γ (LiF: ~18 vs ~7 THz)
    assert f.min() > -1e-3                           # no imaginary modes along the path
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lr"] == "recip-auto" and summary["n_atoms_supercell"] == 128
    assert (out / "band.png").stat().st_size > 10_000
    th = summary["thermal"]                          # F, S, C_V vs T with the bands' correction (recip-auto)
    from phonjax import units
    r = units.KB_EV_K * units.EV_TO_KJ_MOL * 1000   # k_B per mole of cells, J/(K·mol)
    assert 0 < th["at_300K"]["Cv"] < 6 * r and th["at_300K"]["S"] > 0 and th["n_excluded_modes"] == 3
    assert (out / "thermal.png").stat().st_size > 5_000
