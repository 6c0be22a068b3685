"""Smoke test of benchmarks/lif_accuracy.py (quick mode, a tiny random Li/F model, in-process force constants):
the report, JSON and figures are written, and numbers that physics fixes are checked — Γ frequencies without a
correction do not depend on the supercell (Γ is commensurate with every one), the Ewald-based modes do not
depend on Λ, and the DFPT reference values are read back. 43–49 s on the shared 2-core CPU (marked slow; the
metric definitions test is fast)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("lif_accuracy", ROOT / "benchmarks" / "lif_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig

    tmp = tmp_path_factory.mktemp("lif_report")
    cfg = ModelConfig(type_names=("Li", "F", "Mg", "O"), r_max=2.3, feature_irreps_hidden=("4x0e+4x1o", "4x0e"),
                      radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=6.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    Model.init(cfg, seed=3).save(tmp / "model")
    Model.init(cfg, seed=4).save(tmp / "material_models" / "mgo" / "tiny_ft" / "model")  # "finetuned on MgO"
    mod = _load_script()
    assert mod.main(["--quick", "--no-default-models", "--model", f"tiny={tmp / 'model'}", "--fig2-models", "tiny",
                     "--converge-models", "tiny", "--out", str(tmp / "reports"), "--cache", str(tmp / "cache"),
                     "--second-material", str(ROOT / "examples" / "MgO"),
                     "--material-models", str(tmp / "material_models")]) == 0
    return tmp / "reports", mod


@pytest.mark.slow
def test_files_and_sections(report):
    out, _ = report
    md = (out / "lif.md").read_text()
    for sec in ("## a.", "## b.", "## c.", "## d.", "## e.", "## f.", "## g."):
        assert sec in md
    for fig in ("lif_fig2_supercells.png", "lif_modes_tiny.png", "lif_convergence.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    res = json.loads((out / "lif.json").read_text())
    assert set(res["mode_study"]) == {"tiny"}
    assert res["mode_study"]["tiny"]["n"] == 2  # default rule: width ≥ 2·r_max = 4.6 Å → 2³ for LiF
    # second material: the base model and the one under <material-models>/mgo/, each with every mode
    mg = res["second_material"]["MgO"]["models"]
    assert set(mg) == {"tiny", "tiny_ft"} and mg["tiny_ft"]["n"] == 2
    assert "**MgO**" in md and "tiny_ft" in md.split("## f.")[1].split("## g.")[0]
    for fig in ("mgo_auto.png", "mgo_modes_tiny.png", "mgo_modes_tiny_ft.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000


@pytest.mark.slow
def test_physics_of_the_numbers(report):
    out, _ = report
    res = json.loads((out / "lif.json").read_text())
    modes = res["mode_study"]["tiny"]["modes"]
    m = modes["none"]["metrics"]
    assert m["to_ref_thz"] == pytest.approx(8.302, abs=2e-3) and m["lo_ref_thz"] == pytest.approx(18.735, abs=2e-3)
    assert np.isfinite(m["rmse_thz"]) and len(m["rmse_per_branch_thz"]) == 6
    # MgO's reference is its own QE DFPT (examples/MgO/README.md: TO 11.239, LO 20.436 THz)
    mg = res["second_material"]["MgO"]["models"]["tiny_ft"]["modes"]["none"]["metrics"]
    assert mg["to_ref_thz"] == pytest.approx(11.239, abs=2e-3) and mg["lo_ref_thz"] == pytest.approx(20.436, abs=2e-3)
    # without a correction TO = LO at Γ; with the non-analytic term LO is lifted
    assert m["lo_pred_thz"] == pytest.approx(m["to_pred_thz"], abs=1e-6)
    assert modes["na"]["metrics"]["lo_pred_thz"] > m["lo_pred_thz"] + 1.0
    # Ewald sums are Λ-independent; modes without Λ report 0
    for lab in ("ewald", "ewald-leak sphere:5", "ewald-leak box:3"):
        assert modes[lab]["lambda"]["spread_thz"] < 1e-5
    assert modes["none"]["lambda"]["spread_thz"] == 0.0
    # Γ (lr none) is commensurate with every supercell: identical for 2³ and 3³
    rows = res["convergence"]["tiny"]["rows"]
    assert set(rows) == {"2", "3"}
    assert rows["2"]["max_dev_gamma_thz"] < 1e-6
    np.testing.assert_allclose(rows["2"]["gamma_thz"], rows["3"]["gamma_thz"], atol=1e-6)


def test_metrics_definitions():
    """accuracy_metrics on the reference itself is zero; a uniform shift shows up as that RMSE."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _lif import EX, accuracy_metrics, gamma_directions, load_inputs, near_gamma_mask

    prim, born, ref = load_inputs(EX / "POSCAR", EX / "BORN", EX / "dfpt" / "band.yaml")
    m = accuracy_metrics(ref.frequencies, ref)
    assert m["rmse_thz"] == 0 and m["acoustic_near_gamma_thz"] == 0 and m["n_imaginary_modes"] == 0
    m = accuracy_metrics(ref.frequencies + 0.1, ref)
    assert m["rmse_thz"] == pytest.approx(0.1) and m["acoustic_near_gamma_thz"] == pytest.approx(0.1)
    mask = near_gamma_mask(ref)
    assert mask[0] and mask[95] and mask[96] and not mask[39] and not mask[-1]
    d = gamma_directions(ref, prim.cell)
    assert np.isfinite(d[[0, 95, 96]]).all() and np.isnan(d[1]).all()
