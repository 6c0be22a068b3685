"""Converter: a real `nequip-package build` package and Lightning checkpoint (tests/data, see its README),
compared with torch nequip through nequip's own data pipeline; EMA selection; bad input leaves nothing in OUT.
Runtime ≈ 1 min on 2 cores."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nequip")

from ase.build import bulk  # noqa: E402

import phonjax  # noqa: F401,E402
from phonjax.calculator import Calculator  # noqa: E402
from phonjax.models import load_model  # noqa: E402
from phonjax.models.nequip.model import UnsupportedFeature  # noqa: E402
from model_fixtures import SMALL, build_torch_model, torch_reference  # noqa: E402

from phonjax.convert.nequip import ConversionError, convert_nequip, from_torch_module  # noqa: E402

DATA = Path(__file__).parent / "data"
PKG = DATA / "tiny_cu.nequip.zip"
CKPT = DATA / "tiny_cu.ckpt"


def _cu():
    a = bulk("Cu", "fcc", a=3.61).repeat((2, 2, 2))
    a.rattle(0.05, seed=3)
    return a


@pytest.fixture(scope="module")
def torch_package_model():
    import torch

    imp = torch.package.PackageImporter(str(PKG))
    return imp.load_pickle("model", "eager_model.pkl", map_location="cpu")["sole_model"].eval()


def test_package_conversion_matches_torch(tmp_path, torch_package_model):
    out = tmp_path / "cu"
    model = convert_nequip(PKG, out)
    assert model.metadata["source_format"] == "nequip-package"
    assert model.metadata["self_check"]["forces"] < 1e-10
    m = load_model(out)
    meta = m.metadata
    assert meta["source_sha256"] and meta["nequip_version"] and meta["type_names"] == ["Cu"]
    assert m.config.zbl and m.config.zbl_polynomial_cutoff_p == 6.0 and m.config.polynomial_cutoff_p == 6.0
    atoms = _cu()
    E, F, S, _ = torch_reference(torch_package_model, atoms)
    atoms.calc = Calculator(m)
    assert abs(atoms.get_potential_energy() - E) < 1e-10
    assert np.abs(atoms.get_forces() - F).max() < 1e-10
    from ase.stress import full_3x3_to_voigt_6_stress
    assert np.abs(atoms.get_stress() - full_3x3_to_voigt_6_stress(S)).max() < 1e-10


def test_ckpt_uses_ema_weights(tmp_path):
    import torch

    model = convert_nequip(CKPT, tmp_path / "ck")
    assert model.metadata["weights"] == "EMA" and "EMA" in model.metadata["message"]
    pkg = convert_nequip(PKG, tmp_path / "pk", check=False)  # packages hold the EMA weights
    atoms = _cu()
    assert abs(model.energy_forces_stress(atoms)[0] - pkg.energy_forces_stress(atoms)[0]) < 1e-10
    # and the raw weights of the checkpoint are different from the EMA ones
    sd = torch.load(CKPT, map_location="cpu", weights_only=False)["state_dict"]
    raw = sd["model.sole_model.model.func.type_embed.embed_module.weight"].numpy()
    assert not np.allclose(raw, np.asarray(model.params["type_embed"]["embedding"]))


def test_float32_override(tmp_path):
    m = convert_nequip(PKG, tmp_path / "f32", dtype="float32", check=False)
    assert m.dtype == "float32" and load_model(tmp_path / "f32").dtype == "float32"
    m64 = load_model(convert_nequip(PKG, tmp_path / "f64", check=False) and tmp_path / "f64")
    e32, e64 = m.energy_forces_stress(_cu())[0], m64.energy_forces_stress(_cu())[0]
    assert abs(e32 - e64) < 1e-4


def test_bad_sources_leave_nothing(tmp_path):
    out = tmp_path / "out"
    txt = tmp_path / "model.ckpt"
    txt.write_text("not a model")
    with pytest.raises(ConversionError, match="not a nequip package or Lightning checkpoint"):
        convert_nequip(txt, out)
    import torch
    pt = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, pt)
    with pytest.raises(ConversionError, match="Lightning"):
        convert_nequip(pt, out)
    import zipfile
    z = tmp_path / "x.nequip.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hello.txt", "hi")
    with pytest.raises(ConversionError):
        convert_nequip(z, out)
    with pytest.raises(ConversionError, match="no such file"):
        convert_nequip(tmp_path / "missing.zip", out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        convert_nequip(PKG, out)
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_unsupported_feature_is_named():
    arch = dict(SMALL, type_names=["Li", "F"], per_edge_type_cutoff={"Li": 3.5, "F": {"Li": 3.0, "F": 3.8}})
    tm = build_torch_model(arch, zbl=False)
    with pytest.raises(UnsupportedFeature, match="per_edge_type_cutoff"):
        from_torch_module(tm)
    with pytest.raises(ConversionError, match="GraphModel"):
        from_torch_module(__import__("torch").nn.Linear(2, 2))


def test_cli_convert(tmp_path):
    """`phonjax convert nequip SRC --out DIR`: works on the real package; bad input → one line, exit ≠ 0."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run([sys.executable, "-m", "phonjax.cli", "convert", "nequip", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, cwd=root)
    r = run(PKG, "--out", tmp_path / "ok")
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_model(tmp_path / "ok").type_names == ("Cu",)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 64)
    r = run(bad, "--out", tmp_path / "no")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "no").exists()
