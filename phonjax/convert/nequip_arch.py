"""torch nequip modules → phonjax :class:`ModelConfig` and parameters (the architecture and weight mapping of
:mod:`convert.nequip`).

Read from the loaded *modules* (not a config file); every feature phonjax does not reproduce raises
:class:`UnsupportedFeature` naming it, inconsistent models raise :class:`ConversionError`. torch is imported only
when called.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phonjax.convert._common import ConversionError
from phonjax.convert._common import irreps_str as _irr
from phonjax.models.nequip.model import ModelConfig, UnsupportedFeature
from phonjax.models.nequip.nn import irreps as I
from phonjax.units import COULOMB_EV_A


def config_and_params(gm, mods: dict, dtype: str):
    """(ModelConfig, params as jax arrays) of a torch nequip GraphModel ``gm`` whose GNN children are ``mods``
    (name → module, sequence already checked); ``dtype`` "float32"/"float64" is the source model's dtype."""
    import torch

    type_names, emb = _type_names(gm, mods["type_embed"])
    sh = mods["spharm"]
    be = mods["bessel_encode"]
    r_max, bessel_w = _radial_basis(sh, mods["edge_norm"], be)
    layers = _interaction_layers(mods)
    resnet = [p.resnet for p in layers]
    sc_flags = [p.conv.sc is not None for p in layers]
    conv_resnet = any(resnet)
    sc_first = sc_flags[0]
    convnet_sc = any(sc_flags[1:]) if len(sc_flags) > 1 else sc_first
    acts_s = {k: v for p in layers for k, v in p.acts_scalars.items()}
    acts_g = {k: v for p in layers for k, v in p.acts_gates.items()}
    avg = layers[0].avg_num_neighbors
    ro_ws, ro_act = _mlp_weights(mods["per_atom_energy_readout"].mlp_module)
    ss = mods["per_type_energy_scale_shift"]
    scales, shifts = _scales_shifts(ss, len(type_names))
    zbl = "pair_potential" in mods
    zbl_kw = _zbl_options(mods["pair_potential"], be) if zbl else {}
    _check_energy_sum(mods["total_energy_sum"])
    config = ModelConfig(
        type_names=tuple(type_names), r_max=r_max, feature_irreps_hidden=tuple(p.hidden for p in layers),
        radial_mlp_depth=tuple(p.depth for p in layers), radial_mlp_width=tuple(p.width for p in layers),
        avg_num_neighbors=avg[0] if len(avg) == 1 else avg, dtype=dtype, irreps_edge_sh=_irr(sh.irreps_edge_sh),
        type_embed_num_features=int(emb.shape[1]), num_bessels=int(bessel_w.shape[1]),
        bessel_trainable=isinstance(be.bessel_weights, torch.nn.Parameter),
        polynomial_cutoff_p=float(be.cutoff.p), edge_factor=float(mods["factor"].factor),
        convnet_sc=convnet_sc, sc_first_layer=sc_first, convnet_resnet=conv_resnet,
        nonlinearity_scalars=(acts_s.get(1, "silu"), acts_s.get(-1, "tanh")),
        nonlinearity_gates=(acts_g.get(1, "silu"), acts_g.get(-1, "tanh")),
        readout_hidden=tuple(int(w.shape[1]) for w in ro_ws[:-1]), readout_nonlinearity=ro_act,
        per_type_energy_scales=tuple(scales.tolist()), per_type_energy_shifts=tuple(shifts.tolist()),
        per_type_energy_scales_trainable=bool(getattr(ss, "scales_trainable", False)),
        per_type_energy_shifts_trainable=bool(getattr(ss, "shifts_trainable", False)),
        zbl=zbl, **zbl_kw)
    _check_layer_irreps(config, layers)
    mdt = np.float32 if dtype == "float32" else np.float64
    params = {f"layer{k}_convnet": {"conv": {m: {n: np.asarray(v, mdt) for n, v in d.items()}
                                             for m, d in p.params.items()}}
              for k, p in enumerate(layers)}
    params["type_embed"] = {"embedding": emb.astype(mdt)}
    params["bessel_encode"] = {"bessel_weights": bessel_w}
    params["per_atom_energy_readout"] = {f"weight_{i}": w.astype(mdt) for i, w in enumerate(ro_ws)}
    params["per_type_energy_scale_shift"] = {"scales": scales.copy(), "shifts": shifts.copy()}
    return config, _to_jax(params)


# -- embedding and edges ---------------------------------------------------------------------------
def _np(t):
    return t.detach().cpu().numpy()


def _type_names(gm, te) -> tuple[list[str], np.ndarray]:
    """(type names, embedding weights (n_types, n_features)) of the type embedding ``te``; the names come from the
    GraphModel or, for older packages, its metadata."""
    if getattr(te, "do_categorical_graph_field_embed", False):
        raise UnsupportedFeature("categorical_graph_field_embed")
    emb = _np(te.embed_module.weight)
    type_names = list(getattr(gm, "type_names", None) or [])
    if not type_names:
        md = getattr(gm, "_metadata", None) or {}
        type_names = str(md.get("type_names", "")).split()
    if len(type_names) != emb.shape[0]:
        raise ConversionError(f"{len(type_names)} type names for {emb.shape[0]} embedding rows")
    return type_names, emb


def _radial_basis(sh, en, be) -> tuple[float, np.ndarray]:
    """(r_max in Å, Bessel weights (1, num_bessels) float64) after checking the spherical harmonics ``sh``, the
    edge-length normalisation ``en`` and the Bessel encoding ``be`` (polynomial cutoff) are what phonjax does."""
    if not (getattr(sh.sh, "normalize", True) and getattr(sh.sh, "normalization", "component") == "component"):
        raise UnsupportedFeature("spherical harmonics normalisation other than normalize=True/component")
    if getattr(en, "_per_edge_type", False):
        raise UnsupportedFeature("per_edge_type_cutoff")
    r_max = float(en.r_max) if hasattr(en, "r_max") else 1.0 / float(en._rmax_recip)
    if type(be.cutoff).__name__ not in ("PolynomialCutoff", "RecursiveScriptModule") or not hasattr(be.cutoff, "p"):
        raise UnsupportedFeature(f"edge cutoff {type(be.cutoff).__name__}")
    return r_max, _np(be.bessel_weights).astype(np.float64).reshape(1, -1)


# -- interaction layers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layer:
    """One ``layer{k}_convnet``: hidden irreps, radial MLP depth/width, avg_num_neighbors (global or per type),
    resnet flag, gate activations by parity (1/-1 → name), its torch InteractionBlock and its weights."""

    hidden: str
    depth: int
    width: int
    avg_num_neighbors: tuple
    resnet: bool
    acts_scalars: dict
    acts_gates: dict
    conv: object
    params: dict


def _interaction_layers(mods) -> list[_Layer]:
    """Every ``layer{k}_convnet`` in order; all must share one avg_num_neighbors."""
    layers, avg = [], None
    k = 0
    while f"layer{k}_convnet" in mods:
        layer = _interaction_layer(mods[f"layer{k}_convnet"], avg)
        avg = layer.avg_num_neighbors if avg is None else avg
        layers.append(layer)
        k += 1
    return layers


def _interaction_layer(L, avg) -> _Layer:
    """Config and weights of the ConvNetLayer ``L`` (Gate nonlinearity, InteractionBlock convolution, SiLU radial
    MLP, no linear biases); ``avg`` is the previous layers' avg_num_neighbors (None for the first)."""
    conv = L.conv
    if type(L.equivariant_nonlin).__name__ != "Gate":
        raise UnsupportedFeature("nonlinearity_type='norm' (NormActivation)")
    if type(conv).__name__ != "InteractionBlock":
        raise UnsupportedFeature(f"convolution {type(conv).__name__}")
    hidden = _irr(L.feature_irreps_hidden)
    ws, act = _mlp_weights(conv.edge_mlp)
    if act != "silu":
        raise UnsupportedFeature(f"radial MLP nonlinearity {act}")
    depth, width = len(ws) - 1, int(ws[0].shape[1]) if len(ws) > 1 else 0
    a = _avg_num_neighbors(conv)
    if avg is not None and a != avg:
        raise UnsupportedFeature("different avg_num_neighbors per layer")
    resnet = bool(L.resnet)
    g = L.equivariant_nonlin
    s_names = [_act_name(f) for f in g.act_scalars.acts]
    g_names = [_act_name(f) for f in g.act_gates.acts]
    s_irr = I.parse_irreps(str(g.irreps_scalars))
    g_irr = I.parse_irreps(str(g.irreps_gates))
    lp = {"linear_1": {"weight": _np(conv.linear_1.weight)}, "linear_2": {"weight": _np(conv.linear_2.weight)},
          "edge_mlp": {f"weight_{i}": w for i, w in enumerate(ws)}}
    for lin in (conv.linear_1, conv.linear_2):
        if lin.bias.numel():
            raise UnsupportedFeature("o3.Linear biases")
    if conv.sc is not None:
        lp["sc"] = {"weight": _np(conv.sc.weight)}
    return _Layer(hidden=hidden, depth=depth, width=width, avg_num_neighbors=a, resnet=resnet,
                  acts_scalars={p: n for (_, _, p), n in zip(s_irr, s_names)},
                  acts_gates={p: n for (_, _, p), n in zip(g_irr, g_names)}, conv=conv, params=lp)


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


def _check_layer_irreps(config: ModelConfig, layers: list[_Layer]) -> None:
    """Cross-check the irreps and self-connection/resnet pattern phonjax derives from ``config`` with torch's."""
    for kk, (layer, Lc) in enumerate(zip(layers, config.layer_irreps())):
        conv = layer.conv
        mine = (I.irreps_str(Lc["irreps_in"]), I.irreps_str(Lc["conv_out"]))
        theirs = (_irr(conv.linear_1.irreps_in), _irr(conv.linear_2.irreps_out))
        if mine != theirs:
            raise UnsupportedFeature(f"layer {kk}: irreps {theirs} differ from phonjax's {mine}")
        if bool(Lc["use_sc"]) != (conv.sc is not None) or bool(Lc["resnet"]) != bool(layer.resnet):
            raise UnsupportedFeature(f"layer {kk}: self-connection/resnet pattern not expressible")


# -- energy head -----------------------------------------------------------------------------------
def _scales_shifts(ss, n_types: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-type energy scales and shifts (n_types,) float64 (eV) of the scale/shift module ``ss``; a global
    value is broadcast, a missing one is 1 / 0."""
    sc_t, sh_t = getattr(ss, "scales", None), getattr(ss, "shifts", None)
    has_sc = getattr(ss, "has_scales", sc_t is not None and sc_t.numel() > 0)
    has_sh = getattr(ss, "has_shifts", sh_t is not None and sh_t.numel() > 0)
    scales = np.broadcast_to(_np(sc_t).reshape(-1), (n_types,)).astype(np.float64) if has_sc else np.ones(n_types)
    shifts = np.broadcast_to(_np(sh_t).reshape(-1), (n_types,)).astype(np.float64) if has_sh else np.zeros(n_types)
    return scales, shifts


def _zbl_options(pp, be) -> dict:
    """ModelConfig ZBL fields of the pair potential ``pp`` (only ZBL): species, cutoff polynomial p and the
    Coulomb constant (eV·Å); ``be`` is the Bessel encoding whose cutoff p nequip ≤ 0.16 reused."""
    if type(pp).__name__ != "ZBL":
        raise UnsupportedFeature(f"pair_potential {type(pp).__name__} (only ZBL)")
    from ase.data import chemical_symbols
    zs = [int(round(z)) for z in _np(pp.atomic_numbers).reshape(-1)]
    # nequip >= 0.17: ZBL has its own cutoff module (p = 6 by default); <= 0.16 reused the Bessel p
    p_zbl = getattr(getattr(pp, "cutoff", None), "p", None)
    p_zbl = float(be.cutoff.p) if p_zbl is None else float(p_zbl)
    qq = getattr(pp, "_qqr2exesquare", None)
    return dict(zbl_species=tuple(chemical_symbols[z] for z in zs), zbl_polynomial_cutoff_p=p_zbl,
                zbl_coulomb=COULOMB_EV_A if qq is None else 2.0 * float(qq))


def _check_energy_sum(red) -> None:
    """The total energy must be the plain sum of the atomic energies."""
    if getattr(red, "reduce", "sum") != "sum" or float(getattr(red, "constant", 1.0)) != 1.0:
        raise UnsupportedFeature(f"total energy reduction {red.reduce} × {getattr(red, 'constant', 1.0)}")


def _to_jax(params):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(jnp.asarray, params)


__all__ = ["config_and_params"]
