"""Model files cannot run code through the converters: crafted checkpoints whose loading would create a file
(a pickle ``__reduce__``, a foreign Hydra ``_target_`` at the top, nested, or produced by an interpolation) are
refused with one line and the file is never created; a genuine checkpoint whose hyper-parameters are omegaconf
objects (what Lightning stores) still converts, weights-only. Runtime ≈ 15 s on 2 cores."""
import pathlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nequip")

import phonjax  # noqa: F401,E402

from phonjax.convert._common import ConversionError  # noqa: E402
from phonjax.convert.nequip import convert_nequip  # noqa: E402
from phonjax.convert.nequip_load import ALLOWED_TARGETS, check_targets  # noqa: E402

CKPT = Path(__file__).parent / "data" / "tiny_cu.ckpt"


class _Touch:
    """Pickles as ``pathlib.Path.touch(path)``: unpickling it without restrictions creates ``path``."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def _lightning_like(model_cfg) -> dict:
    return {"state_dict": {"model.sole_model.w": torch.zeros(2)},
            "hyper_parameters": {"info_dict": {"training_module": {"model": model_cfg}}}}


def _refused(call, marker: Path, match: str):
    with pytest.raises(ConversionError, match=match) as ei:
        call()
    msg = str(ei.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert not marker.exists(), "the crafted file ran code"
    return msg


def test_pickle_reduce_is_refused_nequip(tmp_path):
    marker = tmp_path / "created_by_pickle"
    src = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Touch(marker)}}, src)
    msg = _refused(lambda: convert_nequip(src, tmp_path / "out"), marker, "refused to load")
    assert "pathlib" in msg and not (tmp_path / "out").exists()


def test_pickle_reduce_is_refused_sevennet(tmp_path):
    from phonjax.convert.sevennet import convert_sevennet

    marker = tmp_path / "created_by_pickle"
    src = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "config": {"cutoff": _Touch(marker)}}, src)
    _refused(lambda: convert_sevennet(src, out=tmp_path / "out"), marker, "refused to load")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["top", "nested", "interpolated"])
def test_foreign_target_is_refused_before_instantiation(tmp_path, where):
    marker = tmp_path / f"created_by_{where}"
    touch = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    cfg = {"top": touch,
           "nested": {"_target_": "nequip.model.NequIPGNNModel", "pair_potential": touch},
           "interpolated": {"_target_": "nequip.model.NequIPGNNModel",
                            "pair_potential": f"${{oc.create:{{_target_: pathlib.Path.touch, self: {marker}}}}}"},
           }[where]
    src = tmp_path / "evil.ckpt"
    torch.save(_lightning_like(cfg), src)
    msg = _refused(lambda: convert_nequip(src, tmp_path / "out"), marker, "refused")
    assert "pathlib.Path.touch" in msg or "${" in msg


def test_allowlist_is_exact():
    assert "nequip.model.NequIPGNNModel" in ALLOWED_TARGETS
    for bad in ("nequip.model.ModelFromPackage", "nequip.model.ModelFromCheckpoint", "os.system",
                "nequip.model.NequIPGNNModel.__init__", "builtins.eval"):
        with pytest.raises(ConversionError, match="refused"):
            check_targets({"_target_": bad})
    with pytest.raises(ConversionError, match="_partial_"):
        check_targets({"_target_": "nequip.model.NequIPGNNModel", "_partial_": True})
    check_targets({"_target_": "nequip.model.NequIPGNNModel", "layers": [{"a": 1}],
                   "pair_potential": {"_target_": "nequip.nn.pair_potential.ZBL"}})


def test_omegaconf_hyperparameters_still_convert(tmp_path):
    """Lightning stores hyper-parameters as omegaconf containers: weights-only loading must accept them."""
    from omegaconf import OmegaConf

    ck = torch.load(CKPT, map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["info_dict"] = OmegaConf.create(ck["hyper_parameters"]["info_dict"])
    src = tmp_path / "omegaconf.ckpt"
    torch.save(ck, src)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(src))
    assert any(n.startswith("omegaconf.") for n in unsafe)  # the case is real: plain torch.load would refuse
    model = convert_nequip(src, tmp_path / "out", check=False)
    ref = convert_nequip(CKPT, tmp_path / "ref", check=False)
    assert model.metadata["weights"] == "EMA"
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    atoms.positions[0] += 0.05
    e, f, _ = model.energy_forces_stress(atoms)
    e0, f0, _ = ref.energy_forces_stress(atoms)
    assert e == e0 and np.array_equal(f, f0)
