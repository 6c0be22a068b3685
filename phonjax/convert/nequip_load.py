"""Reading torch nequip models: `.nequip.zip` packages and Lightning `.ckpt` checkpoints → a torch GraphModel.

Checkpoints are loaded weights-only (:func:`convert._common.safe_torch_load`) and their model config may
name only nequip's NequIP-GNN model builders and pair potentials as Hydra ``_target_`` (:data:`ALLOWED_TARGETS`,
checked at every depth of the config *before* anything is instantiated): a checkpoint cannot make phonjax
call anything else. A package runs its own bundled code when torch loads it (torch.package): only convert
packages from trusted sources.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from phonjax.convert._common import ConversionError, safe_torch_load

from phonjax.models.nequip.model import UnsupportedFeature

#: Hydra ``_target_``s a checkpoint's model config may name (exact strings): nequip's NequIP GNN builders and
#: the pair potentials their ``pair_potential`` option instantiates. Everything else is refused unrun.
ALLOWED_TARGETS = frozenset({
    "nequip.model.NequIPGNNModel", "nequip.model.FullNequIPGNNModel", "nequip.model.PresetNequIPGNNModel",
    "nequip.model.nequip_models.NequIPGNNModel", "nequip.model.nequip_models.FullNequIPGNNModel",
    "nequip.model.nequip_models.PresetNequIPGNNModel",
    "nequip.nn.pair_potential.ZBL", "nequip.nn.pair_potential.LennardJones",
    "nequip.nn.pair_potential.SimpleLennardJones",
})
#: Hydra keys that change how a target is called (only the default meaning is accepted)
_HYDRA_CALL_KEYS = ("_partial_", "_args_", "_convert_")


def is_package(p: Path) -> bool:
    """Whether ``p`` is a zip holding a torch.package with nequip's ``eager_model.pkl``."""
    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as z:
        return any(n.endswith("eager_model.pkl") or n.endswith(".data/version") for n in z.namelist())


def load_package(p: Path):
    """(GraphModel, info) of a `nequip-package build` file. Runs the package's bundled code (torch.package)."""
    import torch
    import yaml

    try:
        imp = torch.package.PackageImporter(str(p))
        meta = {}
        try:
            meta = yaml.safe_load(imp.load_text("model", "package_metadata.txt")) or {}
        except Exception:
            pass
        obj = imp.load_pickle("model", "eager_model.pkl", map_location="cpu")
    except Exception as e:
        raise ConversionError(f"{p}: not a readable nequip package ({type(e).__name__}: {str(e)[:200]})") from None
    gm = obj["sole_model"] if isinstance(obj, torch.nn.ModuleDict) or "sole_model" in getattr(obj, "_modules", {}) else obj
    versions = meta.get("versions", {}) if isinstance(meta, dict) else {}
    info = {"source_format": "nequip-package", "weights": "as packaged (nequip packages hold EMA weights when "
            "training used EMA)", "message": "converted packaged weights",
            "nequip_version_package": versions.get("nequip") if isinstance(versions, dict) else None}
    return gm, info


def check_targets(cfg, src="checkpoint", where: str = "") -> None:
    """ConversionError unless every ``_target_`` in the model config ``cfg`` (nested dicts/lists) is in
    ALLOWED_TARGETS and no Hydra call-modifying key (``_partial_``, ``_args_``, ``_convert_``) is set.
    Nothing is imported or called. ``src`` names the file in the message, ``where`` the position."""
    at = f" (at {where[1:]})" if where else ""
    if isinstance(cfg, dict):
        tgt = cfg.get("_target_")
        if tgt is not None and (not isinstance(tgt, str) or tgt not in ALLOWED_TARGETS):
            raise ConversionError(f"{src}: refused (nothing was run): its model config{at} names _target_ "
                                  f"{str(tgt)[:120]!r}, not one of nequip's NequIP-GNN model builders or pair "
                                  "potentials")
        for k in _HYDRA_CALL_KEYS:
            if k in cfg:
                raise ConversionError(f"{src}: refused (nothing was run): its model config{at} sets Hydra's {k}")
        for k, v in cfg.items():
            check_targets(v, src, f"{where}.{k}")
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            check_targets(v, src, f"{where}[{i}]")


def _model_config(ck: dict, p: Path) -> dict:
    """The plain-dict model config of a loaded Lightning checkpoint, interpolations resolved."""
    if not isinstance(ck, dict) or "state_dict" not in ck or "hyper_parameters" not in ck:
        raise ConversionError(f"{p}: not a Lightning checkpoint (no state_dict/hyper_parameters)")
    try:
        model_cfg = ck["hyper_parameters"]["info_dict"]["training_module"]["model"]
    except (KeyError, TypeError):
        raise ConversionError(f"{p}: checkpoint has no nequip model config "
                              "(hyper_parameters.info_dict.training_module.model)") from None
    from omegaconf import DictConfig, OmegaConf

    if isinstance(model_cfg, dict):
        model_cfg = dict(model_cfg)
    elif not isinstance(model_cfg, DictConfig):
        raise ConversionError(f"{p}: the model config is a {type(model_cfg).__name__}, not a mapping")
    check_targets(OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=False), p)  # before resolvers run
    try:
        cfg = OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=True)
    except Exception as e:
        raise ConversionError(f"{p}: cannot resolve the model config ({type(e).__name__}: {str(e)[:160]})") from None
    check_targets(cfg, p)
    return cfg


def load_ckpt(p: Path):
    """(GraphModel, info) of a nequip Lightning checkpoint: weights-only load, allowlisted model builder,
    EMA weights when the checkpoint holds them."""
    import torch

    ck = safe_torch_load(p, "nequip package or Lightning checkpoint")
    cfg = _model_config(ck, p)
    from hydra.utils import instantiate
    from nequip.utils.global_state import set_global_state

    set_global_state()
    try:
        built = instantiate(cfg, _recursive_=False)
    except Exception as e:
        raise ConversionError(f"{p}: cannot rebuild the nequip model from its config ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    gm = unwrap(built)
    sd = ck["state_dict"]
    prefix = "model.sole_model."
    msd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not msd:
        raise ConversionError(f"{p}: no model.sole_model.* weights in the checkpoint")
    missing, _ = gm.load_state_dict(msd, strict=False)
    missing = [m for m in missing if not m.endswith("._empty")]
    if missing:
        raise ConversionError(f"{p}: checkpoint lacks weights {missing[:3]}…")
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


def unwrap(m):
    """The GraphModel inside ``m`` (a GraphModel or ``ModuleDict{"sole_model": ...}``)."""
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


__all__ = ["ALLOWED_TARGETS", "is_package", "load_package", "load_ckpt", "check_targets", "unwrap"]
