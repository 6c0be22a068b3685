"""Reading torch nequip models: ``nequip-package build`` zips (torch.package) and Lightning ``.ckpt`` files (EMA
weights when present), and unwrapping the GraphModel inside (torch, nequip, hydra imported only when called)."""
from __future__ import annotations

import zipfile
from pathlib import Path

from phonjax.convert._util import ConversionError
from phonjax.models.nequip.model import UnsupportedFeature

__all__ = ["is_package", "load_package", "load_ckpt", "unwrap_graph_model"]


def is_package(p: Path) -> bool:
    with zipfile.ZipFile(p) as z:
        return any(n.endswith("eager_model.pkl") or n.endswith(".data/version") for n in z.namelist())


def load_package(p: Path):
    import torch
    import yaml

    try:
        imp = torch.package.PackageImporter(str(p))
        info = {}
        try:
            info["package_metadata"] = yaml.safe_load(imp.load_text("model", "package_metadata.txt"))
        except Exception:
            pass
        obj = imp.load_pickle("model", "eager_model.pkl", map_location="cpu")
    except Exception as e:
        raise ConversionError(f"{p}: not a readable nequip package ({type(e).__name__}: {str(e)[:200]})") from None
    gm = obj["sole_model"] if isinstance(obj, torch.nn.ModuleDict) or "sole_model" in getattr(obj, "_modules", {}) else obj
    meta = info.get("package_metadata") or {}
    versions = meta.get("versions", {}) if isinstance(meta, dict) else {}
    info = {"source_format": "nequip-package", "weights": "as packaged (nequip packages hold EMA weights when "
            "training used EMA)", "message": "converted packaged weights",
            "nequip_version_package": versions.get("nequip")}
    return gm, info


def load_ckpt(p: Path):
    import torch

    try:
        ck = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConversionError(f"{p}: not a nequip package or Lightning checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "hyper_parameters" not in ck:
        raise ConversionError(f"{p}: not a Lightning checkpoint (no state_dict/hyper_parameters)")
    try:
        info_dict = ck["hyper_parameters"]["info_dict"]
        model_cfg = info_dict["training_module"]["model"]
    except (KeyError, TypeError):
        raise ConversionError(f"{p}: checkpoint has no nequip model config "
                              "(hyper_parameters.info_dict.training_module.model)") from None
    from hydra.utils import instantiate
    from nequip.utils.global_state import set_global_state

    set_global_state()
    try:
        from omegaconf import OmegaConf
        cfg = OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=True) if not isinstance(model_cfg, dict) \
            else model_cfg
        built = instantiate(cfg, _recursive_=False)
    except Exception as e:
        raise ConversionError(f"{p}: cannot rebuild the nequip model from its config ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    gm = unwrap_graph_model(built)
    sd = ck["state_dict"]
    prefix = "model.sole_model."
    msd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not msd:
        raise ConversionError(f"{p}: no model.sole_model.* weights in the checkpoint")
    missing, unexpected = gm.load_state_dict(msd, strict=False)
    missing = [m for m in missing if not m.endswith("._empty")]
    if missing:
        raise ConversionError(f"{p}: checkpoint lacks weights {missing[:3]}…")
    import re

    ema = {int(m.group(1)): v for k, v in sd.items() if (m := re.search(r"(?:^|\.)ema_weight_(\d+)$", k))}
    holding = next((v.get("is_holding_ema_weights", True) for k, v in sd.items()
                    if k.endswith("ema._extra_state") and isinstance(v, dict)), True)
    used = "raw"
    if ema and not holding:
        used = "EMA"  # the EMA module had swapped its weights into the model: state_dict holds EMA
    elif ema:
        params = list(gm.parameters())
        if sorted(ema) != list(range(len(params))):
            raise ConversionError(f"{p}: {len(ema)} EMA weights for {len(params)} parameters")
        with torch.no_grad():
            for idx, q in enumerate(params):
                e = ema[idx]
                if e.numel() != q.numel():
                    raise ConversionError(f"{p}: EMA weight {idx} has {e.numel()} values, parameter {q.numel()}")
                q.copy_(e.to(q.dtype).reshape(q.shape))
        used = "EMA"
    gm.eval()
    return gm, {"source_format": "lightning-ckpt", "weights": used,
                "message": f"converted {used} weights from the Lightning checkpoint"}


def unwrap_graph_model(m):
    import torch

    if isinstance(m, torch.nn.ModuleDict) or (hasattr(m, "_modules") and "sole_model" in m._modules):
        if "sole_model" not in m._modules:
            raise ConversionError(f"ModuleDict without 'sole_model' (has {list(m._modules)})")
        m = m._modules["sole_model"]
    if type(m).__name__ != "GraphModel" or not hasattr(m, "model"):
        raise ConversionError(f"not a nequip GraphModel (got {type(m).__name__})")
    inner = m.model
    if type(inner).__name__ not in ("ForceStressOutput", "ForceOutput", "SequentialGraphNetwork"):
        raise UnsupportedFeature(f"top-level module {type(inner).__name__} (compiled or modified model)")
    return m
