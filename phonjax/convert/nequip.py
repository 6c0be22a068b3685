"""torch nequip → phonjax: `.nequip.zip` packages, Lightning `.ckpt` files and in-memory models.

``convert_nequip(src, out)`` reads the model, maps its architecture to a :class:`phonjax.models.nequip.model.ModelConfig`
(read from the loaded *modules*, not from a config file, so finetuned/packaged models work), maps every
weight by name, checks the converted model against torch on a small structure, and writes a phonjax model
directory atomically (temporary sibling + rename: nothing half-written in OUT on failure).

Unsupported architecture features raise :class:`phonjax.models.nequip.model.UnsupportedFeature` naming the feature.
Loading (:mod:`convert.nequip_load`): checkpoints are read weights-only and may name only nequip's model
builders; a package runs its own bundled code when torch loads it — convert packages from trusted sources only.
torch is imported only in this package.
"""
from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np

from phonjax.convert._common import ConversionError, check_output_dir, compare_energy_forces, sha256_file
from phonjax.convert._common import irreps_str as _irr
from phonjax.convert.nequip_load import is_package, load_ckpt, load_package, unwrap

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
    outp = check_output_dir(out, overwrite)
    digest = sha256_file(src)
    if is_package(src):
        graph_model, info = load_package(src)  # runs the package's own code (torch.package): trusted sources only
    else:
        graph_model, info = load_ckpt(src)  # weights-only pickle, allowlisted model builders
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

    gm = unwrap(graph_model)
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


def _config_and_params(gm, func, names, mods, dtype):
    te = mods["type_embed"]
    if getattr(te, "do_categorical_graph_field_embed", False):
        raise UnsupportedFeature("categorical_graph_field_embed")
    emb = _np(te.embed_module.weight)
    type_names = list(getattr(gm, "type_names", None) or [])
    if not type_names:
        md = getattr(gm, "_metadata", None) or {}
        type_names = str(md.get("type_names", "")).split()
    if len(type_names) != emb.shape[0]:
        raise ConversionError(f"{len(type_names)} type names for {emb.shape[0]} embedding rows")
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
    bessel_w = _np(be.bessel_weights).astype(np.float64).reshape(1, -1)
    fac = mods["factor"]
    layers, params, hidden, depth, width = [], {}, [], [], []
    avg, resnet, sc_flags = None, [], []
    acts_s, acts_g = None, None
    k = 0
    while f"layer{k}_convnet" in mods:
        L = mods[f"layer{k}_convnet"]
        conv = L.conv
        if type(L.equivariant_nonlin).__name__ != "Gate":
            raise UnsupportedFeature("nonlinearity_type='norm' (NormActivation)")
        if type(conv).__name__ != "InteractionBlock":
            raise UnsupportedFeature(f"convolution {type(conv).__name__}")
        hidden.append(_irr(L.feature_irreps_hidden))
        ws, act = _mlp_weights(conv.edge_mlp)
        if act != "silu":
            raise UnsupportedFeature(f"radial MLP nonlinearity {act}")
        depth.append(len(ws) - 1)
        width.append(int(ws[0].shape[1]) if len(ws) > 1 else 0)
        a = _avg_num_neighbors(conv)
        avg = a if avg is None else avg
        if a != avg:
            raise UnsupportedFeature("different avg_num_neighbors per layer")
        resnet.append(bool(L.resnet))
        sc_flags.append(conv.sc is not None)
        g = L.equivariant_nonlin
        s_names = [_act_name(f) for f in g.act_scalars.acts]
        g_names = [_act_name(f) for f in g.act_gates.acts]
        s_irr = I.parse_irreps(str(g.irreps_scalars))
        g_irr = I.parse_irreps(str(g.irreps_gates))
        s_map = {p: n for (_, _, p), n in zip(s_irr, s_names)}
        g_map = {p: n for (_, _, p), n in zip(g_irr, g_names)}
        acts_s = {**(acts_s or {}), **s_map}
        acts_g = {**(acts_g or {}), **g_map}
        lp = {"linear_1": {"weight": _np(conv.linear_1.weight)}, "linear_2": {"weight": _np(conv.linear_2.weight)},
              "edge_mlp": {f"weight_{i}": w for i, w in enumerate(ws)}}
        for lin in (conv.linear_1, conv.linear_2):
            if lin.bias.numel():
                raise UnsupportedFeature("o3.Linear biases")
        if conv.sc is not None:
            lp["sc"] = {"weight": _np(conv.sc.weight)}
        params[f"layer{k}_convnet"] = {"conv": lp}
        layers.append(conv)
        k += 1
    conv_resnet = any(resnet)
    sc_first = sc_flags[0]
    convnet_sc = any(sc_flags[1:]) if len(sc_flags) > 1 else sc_first
    ro_ws, ro_act = _mlp_weights(mods["per_atom_energy_readout"].mlp_module)
    ss = mods["per_type_energy_scale_shift"]
    T = len(type_names)
    sc_t, sh_t = getattr(ss, "scales", None), getattr(ss, "shifts", None)
    has_sc = getattr(ss, "has_scales", sc_t is not None and sc_t.numel() > 0)
    has_sh = getattr(ss, "has_shifts", sh_t is not None and sh_t.numel() > 0)
    scales = np.broadcast_to(_np(sc_t).reshape(-1), (T,)).astype(np.float64) if has_sc else np.ones(T)
    shifts = np.broadcast_to(_np(sh_t).reshape(-1), (T,)).astype(np.float64) if has_sh else np.zeros(T)
    zbl = "pair_potential" in mods
    zbl_kw = {}
    if zbl:
        pp = mods["pair_potential"]
        if type(pp).__name__ != "ZBL":
            raise UnsupportedFeature(f"pair_potential {type(pp).__name__} (only ZBL)")
        from ase.data import chemical_symbols
        zs = [int(round(z)) for z in _np(pp.atomic_numbers).reshape(-1)]
        # nequip >= 0.17: ZBL has its own cutoff module (p = 6 by default); <= 0.16 reused the Bessel p
        p_zbl = getattr(getattr(pp, "cutoff", None), "p", None)
        p_zbl = float(be.cutoff.p) if p_zbl is None else float(p_zbl)
        qq = getattr(pp, "_qqr2exesquare", None)
        zbl_kw = dict(zbl_species=tuple(chemical_symbols[z] for z in zs), zbl_polynomial_cutoff_p=p_zbl,
                      zbl_coulomb=14.399645 if qq is None else 2.0 * float(qq))
    red = mods["total_energy_sum"]
    if getattr(red, "reduce", "sum") != "sum" or float(getattr(red, "constant", 1.0)) != 1.0:
        raise UnsupportedFeature(f"total energy reduction {red.reduce} × {getattr(red, 'constant', 1.0)}")
    nl_s = (acts_s.get(1, "silu"), acts_s.get(-1, "tanh"))
    nl_g = (acts_g.get(1, "silu"), acts_g.get(-1, "tanh"))
    config = ModelConfig(
        type_names=tuple(type_names), r_max=r_max, feature_irreps_hidden=tuple(hidden),
        radial_mlp_depth=tuple(depth), radial_mlp_width=tuple(width),
        avg_num_neighbors=avg[0] if len(avg) == 1 else avg, dtype=dtype, irreps_edge_sh=_irr(sh.irreps_edge_sh),
        type_embed_num_features=int(emb.shape[1]), num_bessels=int(bessel_w.shape[1]),
        bessel_trainable=isinstance(be.bessel_weights, __import__("torch").nn.Parameter),
        polynomial_cutoff_p=float(be.cutoff.p), edge_factor=float(fac.factor),
        convnet_sc=convnet_sc, sc_first_layer=sc_first, convnet_resnet=conv_resnet,
        nonlinearity_scalars=nl_s, nonlinearity_gates=nl_g,
        readout_hidden=tuple(int(w.shape[1]) for w in ro_ws[:-1]), readout_nonlinearity=ro_act,
        per_type_energy_scales=tuple(scales.tolist()), per_type_energy_shifts=tuple(shifts.tolist()),
        per_type_energy_scales_trainable=bool(getattr(ss, "scales_trainable", False)),
        per_type_energy_shifts_trainable=bool(getattr(ss, "shifts_trainable", False)),
        zbl=zbl, **zbl_kw)
    # cross-check the irreps phonjax derives with torch's modules
    for kk, (conv, Lc) in enumerate(zip(layers, config.layer_irreps())):
        mine = (I.irreps_str(Lc["irreps_in"]), I.irreps_str(Lc["conv_out"]))
        theirs = (_irr(conv.linear_1.irreps_in), _irr(conv.linear_2.irreps_out))
        if mine != theirs:
            raise UnsupportedFeature(f"layer {kk}: irreps {theirs} differ from phonjax's {mine}")
        if bool(Lc["use_sc"]) != (conv.sc is not None) or bool(Lc["resnet"]) != bool(resnet[kk]):
            raise UnsupportedFeature(f"layer {kk}: self-connection/resnet pattern not expressible")
    mdt = np.float32 if dtype == "float32" else np.float64
    params = {k2: {"conv": {m: {n: np.asarray(v, mdt) for n, v in d.items()} for m, d in v2["conv"].items()}}
              for k2, v2 in params.items()}
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
    """|ΔE|/atom and max |ΔF| between torch and phonjax (float64 inputs) on a small rattled 4-atom cell holding
    up to four of the model's species (the first four type names that are chemical symbols)."""
    from ase import Atoms
    from ase.data import atomic_numbers

    torch_types = list(model.type_names)
    picks = [t for t in torch_types if t in atomic_numbers][:4]
    if not picks:
        return {"energy_per_atom": 0.0, "forces": 0.0, "note": "type names are not chemical symbols: not checked"}
    rng = np.random.default_rng(0)
    a = 1.1 * model.r_max / 2.0
    cell = np.eye(3) * a + rng.normal(0, 0.05, (3, 3))
    syms = [picks[i % len(picks)] for i in range(4)]
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + rng.normal(0, 0.02, (4, 3))
    atoms = Atoms(syms, scaled_positions=frac, cell=cell, pbc=True)
    return compare_energy_forces(lambda at: _torch_energy_forces(gm, at), model, atoms)


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
