"""torch nequip → phonjax: `.nequip.zip` packages, Lightning `.ckpt` files and in-memory models.

``convert_nequip(src, out)`` reads the model, maps its architecture to a :class:`phonjax.models.nequip.model.ModelConfig`
(read from the loaded *modules*, not from a config file, so finetuned/packaged models work), maps every
weight by name, checks the converted model against torch on a small structure, and writes a phonjax model
directory atomically (temporary sibling + rename: nothing half-written in OUT on failure).

Unsupported architecture features raise :class:`phonjax.models.nequip.model.UnsupportedFeature` naming the feature.
torch is imported only in this package.
"""
from __future__ import annotations

import datetime
import time
import zipfile
from pathlib import Path

import numpy as np

from phonjax.convert._util import ConversionError, irreps_str, sha256_file
from phonjax.convert.nequip_files import is_package, load_ckpt, load_package, unwrap_graph_model

from phonjax.models.nequip.model import Model, ModelConfig, UnsupportedFeature
from phonjax.models.nequip.nn import irreps as I


EXPECTED_PREFIX = ("type_embed", "spharm", "edge_norm", "bessel_encode", "factor")


# -- public API -------------------------------------------------------------------------------------
def convert_nequip(src, out, *, dtype: str | None = None, overwrite: bool = False, check: bool = True) -> Model:
    """Convert ``src`` (.nequip.zip package or Lightning .ckpt) into the phonjax model directory ``out``.

    dtype: "float32"/"float64" to override the source model's dtype (default: keep it).
    check: compare energies/forces with torch on a small test structure before writing.
    Returns the Model; ``model.metadata["message"]`` says which weights were used (EMA or raw).
    """
    t0 = time.perf_counter()
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"{src}: no such file")
    outp = Path(out)
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())) and not overwrite:
        raise FileExistsError(f"{outp} exists and is not empty")
    digest = sha256_file(src)
    if zipfile.is_zipfile(src) and is_package(src):
        graph_model, info = load_package(src)
    else:
        graph_model, info = load_ckpt(src)
    model = from_torch_module(graph_model, dtype=dtype, check=check)
    meta = dict(model.metadata)
    meta.update(info)
    if info.get("nequip_version_package"):  # the version that built the model, not the converter's
        meta["converter_nequip_version"] = meta.get("nequip_version")
        meta["nequip_version"] = info["nequip_version_package"]
    meta.update(source_file=str(src.name), source_sha256=digest,
                conversion_date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                conversion_seconds=round(time.perf_counter() - t0, 2))
    model = Model(model.config, model.params, meta)
    model.save(outp, overwrite=overwrite)
    return model


def from_torch_module(graph_model, *, dtype: str | None = None, check: bool = True) -> Model:
    """Model from an in-memory torch nequip ``GraphModel`` (or ``ModuleDict{"sole_model": ...}``)."""
    import torch

    gm = unwrap_graph_model(graph_model)
    func = gm.model.func if hasattr(gm.model, "func") else gm.model
    names = [n for n, _ in func.named_children()]
    mods = dict(func.named_children())
    _expect_modules(names, mods)
    src_dtype = {torch.float32: "float32", torch.float64: "float64"}[gm.model_dtype]
    config, params = _config_and_params(gm, func, names, mods, src_dtype)
    if dtype is not None and dtype != src_dtype:
        config = config.replace(dtype=dtype)
        params = _cast_params(params, dtype)
    meta = dict(type_names=list(config.type_names), nequip_version=_nequip_version(gm),
                source_dtype=src_dtype, n_params_torch=int(sum(p.numel() for p in gm.parameters())))
    model = Model(config, params, meta)
    if check:
        err = self_check(gm, model)
        meta["self_check"] = err
        tol = 1e-8 if (src_dtype == "float64" and config.dtype == "float64") else 1e-3
        if not (err["energy_per_atom"] <= tol and err["forces"] <= 10 * tol):
            raise UnsupportedFeature(f"converted model disagrees with torch ({err}); the architecture uses a feature "
                                     "phonjax does not reproduce")
    return model


def _expect_modules(names, mods):
    if tuple(names[:5]) != EXPECTED_PREFIX:
        raise UnsupportedFeature(f"module sequence {names[:6]} is not a NequIP GNN (expected {list(EXPECTED_PREFIX)}…)")
    k = 0
    while f"layer{k}_convnet" in mods:
        k += 1
    rest = names[5 + k:]
    allowed = [["per_atom_energy_readout", "per_type_energy_scale_shift", "total_energy_sum"],
               ["per_atom_energy_readout", "per_type_energy_scale_shift", "pair_potential", "total_energy_sum"]]
    if k == 0 or names[5:5 + k] != [f"layer{i}_convnet" for i in range(k)] or rest not in allowed:
        raise UnsupportedFeature(f"module sequence {names} (expected embedding, layer*_convnet, readout, "
                                 "scale/shift, [pair_potential], total_energy_sum)")


# -- architecture + weights -----------------------------------------------------------------------
def _np(t):
    return t.detach().cpu().numpy()


def _act_name(fn) -> str:
    import torch

    f = getattr(fn, "f", fn)
    if f is torch.nn.functional.silu or isinstance(f, torch.nn.SiLU):
        return "silu"
    if f is torch.tanh or isinstance(f, torch.nn.Tanh):
        return "tanh"
    raise UnsupportedFeature(f"activation {getattr(f, '__name__', f)}")


def _mlp_weights(mlp_fn):
    """(weights, nonlinearity) of a nequip ScalarMLPFunction."""
    import torch

    m = mlp_fn.mlp
    if type(m).__name__ == "DeepLinearMLP":
        return [_np(w) for w in m.weights], None
    ws, act = [], None
    for layer in m:
        name = type(layer).__name__
        if name == "ScalarLinearLayer":
            if layer.bias is not None:
                raise UnsupportedFeature("MLP with bias")
            if float(layer.alpha) != float(layer.alpha):
                raise UnsupportedFeature("MLP alpha")
            ws.append(_np(layer.weight))
        elif isinstance(layer, torch.nn.SiLU):
            act = "silu"
        elif isinstance(layer, torch.nn.Tanh):
            act = "tanh"
        else:
            raise UnsupportedFeature(f"MLP layer {name} (parametrised or unusual nonlinearity)")
    return ws, act


def _avg_num_neighbors(conv) -> tuple[float, ...]:
    """avg_num_neighbors of an InteractionBlock: 0.16+ ``AvgNumNeighborsNorm.norm_const`` (1/√N, global or
    per type); older versions keep a float (``avg_num_neighbors`` or ``scatter_norm_factor`` = 1/√N)."""
    norm = getattr(conv, "avg_num_neighbors_norm", None)
    if norm is not None:
        nc = [float(x) for x in _np(norm.norm_const).reshape(-1)]
        return tuple(1.0 / (c * c) for c in nc)
    avg = getattr(conv, "avg_num_neighbors", None)
    if isinstance(avg, (int, float)):
        return (float(avg),)
    f = getattr(conv, "scatter_norm_factor", None)
    if isinstance(f, (int, float)) and f > 0:
        return (1.0 / (float(f) ** 2),)
    if avg is None and f is None:
        return (1.0,)  # no normalisation
    raise UnsupportedFeature("avg_num_neighbors normalisation of this nequip version")


def _type_names(gm, emb) -> list[str]:
    type_names = list(getattr(gm, "type_names", None) or [])
    if not type_names:
        md = getattr(gm, "_metadata", None) or {}
        type_names = str(md.get("type_names", "")).split()
    if len(type_names) != emb.shape[0]:
        raise ConversionError(f"{len(type_names)} type names for {emb.shape[0]} embedding rows")
    return type_names


def _edge_modules(mods):
    """(r_max Å, Bessel module) after checking the spherical-harmonics, edge-norm and cutoff settings."""
    sh = mods["spharm"]
    if not (getattr(sh.sh, "normalize", True) and getattr(sh.sh, "normalization", "component") == "component"):
        raise UnsupportedFeature("spherical harmonics normalisation other than normalize=True/component")
    en = mods["edge_norm"]
    if getattr(en, "_per_edge_type", False):
        raise UnsupportedFeature("per_edge_type_cutoff")
    r_max = float(en.r_max) if hasattr(en, "r_max") else 1.0 / float(en._rmax_recip)
    be = mods["bessel_encode"]
    if type(be.cutoff).__name__ not in ("PolynomialCutoff", "RecursiveScriptModule") or not hasattr(be.cutoff, "p"):
        raise UnsupportedFeature(f"edge cutoff {type(be.cutoff).__name__}")
    return r_max, be


def _layer(L) -> dict:
    """One interaction layer: its hidden irreps, radial MLP, normalisation, resnet/self-connection flags,
    gate nonlinearities by parity and parameters."""
    conv = L.conv
    if type(L.equivariant_nonlin).__name__ != "Gate":
        raise UnsupportedFeature("nonlinearity_type='norm' (NormActivation)")
    if type(conv).__name__ != "InteractionBlock":
        raise UnsupportedFeature(f"convolution {type(conv).__name__}")
    ws, act = _mlp_weights(conv.edge_mlp)
    if act != "silu":
        raise UnsupportedFeature(f"radial MLP nonlinearity {act}")
    g = L.equivariant_nonlin
    s_irr = I.parse_irreps(str(g.irreps_scalars))
    g_irr = I.parse_irreps(str(g.irreps_gates))
    lp = {"linear_1": {"weight": _np(conv.linear_1.weight)}, "linear_2": {"weight": _np(conv.linear_2.weight)},
          "edge_mlp": {f"weight_{i}": w for i, w in enumerate(ws)}}
    for lin in (conv.linear_1, conv.linear_2):
        if lin.bias.numel():
            raise UnsupportedFeature("o3.Linear biases")
    if conv.sc is not None:
        lp["sc"] = {"weight": _np(conv.sc.weight)}
    return {"conv": conv, "hidden": irreps_str(L.feature_irreps_hidden), "depth": len(ws) - 1,
            "width": int(ws[0].shape[1]) if len(ws) > 1 else 0, "avg": _avg_num_neighbors(conv),
            "resnet": bool(L.resnet), "sc": conv.sc is not None,
            "acts_s": {p: _act_name(f) for (_, _, p), f in zip(s_irr, g.act_scalars.acts)},
            "acts_g": {p: _act_name(f) for (_, _, p), f in zip(g_irr, g.act_gates.acts)},
            "params": {"conv": lp}}


def _scale_shift(ss, n_types: int):
    """(scales, shifts) (n_types,) of the per-type energy scale/shift module (ones/zeros when absent)."""
    sc_t, sh_t = getattr(ss, "scales", None), getattr(ss, "shifts", None)
    has_sc = getattr(ss, "has_scales", sc_t is not None and sc_t.numel() > 0)
    has_sh = getattr(ss, "has_shifts", sh_t is not None and sh_t.numel() > 0)
    scales = np.broadcast_to(_np(sc_t).reshape(-1), (n_types,)).astype(np.float64) if has_sc else np.ones(n_types)
    shifts = np.broadcast_to(_np(sh_t).reshape(-1), (n_types,)).astype(np.float64) if has_sh else np.zeros(n_types)
    return scales, shifts


def _zbl_kwargs(mods, be) -> dict:
    """ModelConfig fields of the ZBL pair potential ({} without one)."""
    if "pair_potential" not in mods:
        return {}
    pp = mods["pair_potential"]
    if type(pp).__name__ != "ZBL":
        raise UnsupportedFeature(f"pair_potential {type(pp).__name__} (only ZBL)")
    from ase.data import chemical_symbols
    zs = [int(round(z)) for z in _np(pp.atomic_numbers).reshape(-1)]
    # nequip >= 0.17: ZBL has its own cutoff module (p = 6 by default); <= 0.16 reused the Bessel p
    p_zbl = getattr(getattr(pp, "cutoff", None), "p", None)
    p_zbl = float(be.cutoff.p) if p_zbl is None else float(p_zbl)
    qq = getattr(pp, "_qqr2exesquare", None)
    return dict(zbl_species=tuple(chemical_symbols[z] for z in zs), zbl_polynomial_cutoff_p=p_zbl,
                zbl_coulomb=14.399645 if qq is None else 2.0 * float(qq))


def _check_layer_irreps(layers: list[dict], config) -> None:
    """Cross-check the irreps phonjax derives from ``config`` with torch's modules."""
    for kk, (ly, Lc) in enumerate(zip(layers, config.layer_irreps())):
        conv = ly["conv"]
        mine = (I.irreps_str(Lc["irreps_in"]), I.irreps_str(Lc["conv_out"]))
        theirs = (irreps_str(conv.linear_1.irreps_in), irreps_str(conv.linear_2.irreps_out))
        if mine != theirs:
            raise UnsupportedFeature(f"layer {kk}: irreps {theirs} differ from phonjax's {mine}")
        if bool(Lc["use_sc"]) != (conv.sc is not None) or bool(Lc["resnet"]) != bool(ly["resnet"]):
            raise UnsupportedFeature(f"layer {kk}: self-connection/resnet pattern not expressible")


def _config_and_params(gm, func, names, mods, dtype):
    te = mods["type_embed"]
    if getattr(te, "do_categorical_graph_field_embed", False):
        raise UnsupportedFeature("categorical_graph_field_embed")
    emb = _np(te.embed_module.weight)
    type_names = _type_names(gm, emb)
    r_max, be = _edge_modules(mods)
    bessel_w = _np(be.bessel_weights).astype(np.float64).reshape(1, -1)
    layers = []
    while f"layer{len(layers)}_convnet" in mods:
        layers.append(_layer(mods[f"layer{len(layers)}_convnet"]))
    avg = layers[0]["avg"]
    if any(ly["avg"] != avg for ly in layers):
        raise UnsupportedFeature("different avg_num_neighbors per layer")
    sc_flags = [ly["sc"] for ly in layers]
    acts_s = {k: v for ly in layers for k, v in ly["acts_s"].items()}
    acts_g = {k: v for ly in layers for k, v in ly["acts_g"].items()}
    ro_ws, ro_act = _mlp_weights(mods["per_atom_energy_readout"].mlp_module)
    ss = mods["per_type_energy_scale_shift"]
    scales, shifts = _scale_shift(ss, len(type_names))
    zbl_kw = _zbl_kwargs(mods, be)
    red = mods["total_energy_sum"]
    if getattr(red, "reduce", "sum") != "sum" or float(getattr(red, "constant", 1.0)) != 1.0:
        raise UnsupportedFeature(f"total energy reduction {red.reduce} × {getattr(red, 'constant', 1.0)}")
    config = ModelConfig(
        type_names=tuple(type_names), r_max=r_max, feature_irreps_hidden=tuple(ly["hidden"] for ly in layers),
        radial_mlp_depth=tuple(ly["depth"] for ly in layers), radial_mlp_width=tuple(ly["width"] for ly in layers),
        avg_num_neighbors=avg[0] if len(avg) == 1 else avg, dtype=dtype,
        irreps_edge_sh=irreps_str(mods["spharm"].irreps_edge_sh),
        type_embed_num_features=int(emb.shape[1]), num_bessels=int(bessel_w.shape[1]),
        bessel_trainable=isinstance(be.bessel_weights, __import__("torch").nn.Parameter),
        polynomial_cutoff_p=float(be.cutoff.p), edge_factor=float(mods["factor"].factor),
        convnet_sc=any(sc_flags[1:]) if len(sc_flags) > 1 else sc_flags[0], sc_first_layer=sc_flags[0],
        convnet_resnet=any(ly["resnet"] for ly in layers),
        nonlinearity_scalars=(acts_s.get(1, "silu"), acts_s.get(-1, "tanh")),
        nonlinearity_gates=(acts_g.get(1, "silu"), acts_g.get(-1, "tanh")),
        readout_hidden=tuple(int(w.shape[1]) for w in ro_ws[:-1]), readout_nonlinearity=ro_act,
        per_type_energy_scales=tuple(scales.tolist()), per_type_energy_shifts=tuple(shifts.tolist()),
        per_type_energy_scales_trainable=bool(getattr(ss, "scales_trainable", False)),
        per_type_energy_shifts_trainable=bool(getattr(ss, "shifts_trainable", False)),
        zbl="pair_potential" in mods, **zbl_kw)
    _check_layer_irreps(layers, config)
    mdt = np.float32 if dtype == "float32" else np.float64
    params = {f"layer{k}_convnet": {"conv": {m: {n: np.asarray(v, mdt) for n, v in d.items()}
                                             for m, d in ly["params"]["conv"].items()}}
              for k, ly in enumerate(layers)}
    params["type_embed"] = {"embedding": emb.astype(mdt)}
    params["bessel_encode"] = {"bessel_weights": bessel_w}
    params["per_atom_energy_readout"] = {f"weight_{i}": w.astype(mdt) for i, w in enumerate(ro_ws)}
    params["per_type_energy_scale_shift"] = {"scales": scales.copy(), "shifts": shifts.copy()}
    return config, _to_jax(params)


def _to_jax(params):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(jnp.asarray, params)


def _cast_params(params, dtype):
    import jax
    import jax.numpy as jnp

    def cast(path, x):
        keys = [getattr(p, "key", "") for p in path]
        if keys[0] in ("bessel_encode", "per_type_energy_scale_shift"):
            return x
        return jnp.asarray(x, dtype)

    return jax.tree_util.tree_map_with_path(cast, params)


def _nequip_version(gm) -> str | None:
    try:
        import nequip

        return nequip.__version__
    except Exception:
        return None


# -- self check -----------------------------------------------------------------------------------
def self_check(gm, model: Model) -> dict:
    """|ΔE|/atom and max |ΔF| between torch and phonjax on a small rattled two-species structure."""
    from ase import Atoms
    from ase.data import atomic_numbers

    torch_types = list(model.type_names)
    picks = [t for t in torch_types if t in atomic_numbers][:2] or []
    if not picks:
        return {"energy_per_atom": 0.0, "forces": 0.0, "note": "type names are not chemical symbols: not checked"}
    rng = np.random.default_rng(0)
    a = 1.1 * model.r_max / 2.0
    cell = np.eye(3) * a + rng.normal(0, 0.05, (3, 3))
    syms = [picks[i % len(picks)] for i in range(4)]
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + rng.normal(0, 0.02, (4, 3))
    atoms = Atoms(syms, scaled_positions=frac, cell=cell, pbc=True)
    E_t, F_t = _torch_energy_forces(gm, atoms)
    E_j, F_j, _ = model.energy_forces_stress(atoms)
    return {"energy_per_atom": abs(E_t - E_j) / len(atoms), "forces": float(np.max(np.abs(F_t - F_j)))}


def torch_graph_input(gm, atoms) -> dict:
    """nequip's input dict (float64) of one structure for the torch GraphModel ``gm``, edges from phonjax's
    neighbour list (no nequip data pipeline: works for packaged models too)."""
    import torch
    from phonjax.graph import neighbor_list

    r_max = float(gm.model.func.edge_norm.r_max)
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, r_max)
    dt = torch.float64
    tidx = {t: k for k, t in enumerate(gm.type_names)}
    return {
        "pos": torch.tensor(atoms.positions, dtype=dt),
        "edge_index": torch.tensor(np.stack([i, j]), dtype=torch.long),
        "edge_cell_shift": torch.tensor(S, dtype=dt),
        "cell": torch.tensor(atoms.cell.array, dtype=dt).view(1, 3, 3),
        "pbc": torch.ones(1, 3, dtype=torch.bool),
        "atom_types": torch.tensor([tidx[s] for s in atoms.get_chemical_symbols()], dtype=torch.long),
        "num_atoms": torch.tensor([len(atoms)], dtype=torch.long),
    }


def _torch_energy_forces(gm, atoms):
    """Torch E and F of ``atoms`` (float64)."""
    out = gm(torch_graph_input(gm, atoms))
    return float(out["total_energy"].detach().reshape(())), out["forces"].detach().double().numpy()


__all__ = ["convert_nequip", "from_torch_module", "ConversionError", "UnsupportedFeature", "self_check"]
