"""SevenNet (PyPI ``sevenn``) → phonjax: the offline embedded default model SevenNet-0.

``convert_sevennet(checkpoint=None, out)`` loads a SevenNet checkpoint (default: SevenNet-0 11Jul2024,
shipped inside the installed ``sevenn`` wheel), reads its architecture from the *built torch modules*
(sevenn's own builder, so its backward-compatibility patches of old checkpoints are applied), maps every
weight onto the phonjax NequIP model (SevenNet variants of :class:`phonjax.models.nequip.model.ModelConfig`), checks the
result against torch on a small structure and writes a phonjax model directory (``Model.save``).

SevenNet-0's forward pass, numerically (sevenn 0.13 / e3nn 0.6, all facts read from the code):

* type index = position of the element in the alphabetically sorted ``chemical_species`` (89 elements);
  one-hot (89) → ``o3.Linear(89x0e → 128x0e)`` (no bias): h = W[t] / √89.
* edges: vec = pos[j] − pos[i] + shift (i = ``edge_index[0]`` = centre, messages summed onto i);
  SH ``Irreps.spherical_harmonics(2, parity=+1)`` = 1x0e+1x1e+1x2e (component normalisation,
  normalize=True; same values as 0e+1o+2e, only the *labels* differ: ``is_parity=False``).
* radial: Bessel (2/r_c)·sin(c_n r)/r with trainable c (init nπ/r_c, Å⁻¹) × XPLOR switch
  s(r) = 1 for r < r_on, else (r_c²−r²)²(r_c²+2r²−3r_on²)/(r_c²−r_on²)³ (r_on 4.5, r_c 5.0 Å).
  This equals nequip's Bessel sin(π w x)/(π x)·2π/r_c² with w_n = c_n r_c / π.
* per layer t (5 layers; irreps 128x0e → 4× 128x0e+64x1e+32x2e → 128x0e):
  sc = o3.Linear(h → gate input) (plain linear self-connection, also in layer 0);
  h' = o3.Linear(h → h); weights = e3nn ``FullyConnectedNet([8, 64, 64, n])``: layer k computes
  x @ W_k/√fan_in, hidden layers then act = c·silu(x) with c = normalize2mom(silu) = 1.6791767923989418;
  m_i = Σ_j TP_uvu(h'_j, Y_ij; w_ij) with paths ir_x ⊗ ir_sh kept when in the reachable irreps ≤ l_max
  (with all-even labels 1e⊗1e→1e is kept), coefficient √(2l_out+1)·w3j, output slots sorted;
  **the TP instructions are sorted by output slot before building the TensorProduct** (sevenn ≥ 0.11),
  so the edge weights are laid out in *sorted* order (nequip: unsorted) — the converter permutes the
  columns of the last radial layer into phonjax's (nequip) order;
  m_i /= avg_num_neigh (35.98957… = the average number of neighbours itself, not its square root);
  x = o3.Linear(m → gate input) + sc; Gate: normalised SiLU on scalars and gates (last layer: scalars only).
* readout: o3.Linear(128x0e → 64x0e) then o3.Linear(64x0e → 1x0e), *no* activation in between;
  E_i = scale[t]·e_i + shift[t] (scale 1.73 for all types); E = Σ E_i (float32 throughout).
* forces −∂E/∂r via edge vectors; stress = (1/V) Σ_edges r ⊗ ∂E/∂r reported by SevenNetCalculator in ASE's
  sign convention (Voigt xx yy zz yz xz xy), i.e. (1/V) ∂E/∂ε — the same as phonjax.

torch and sevenn are imported only in phonjax/convert/ (and only when called).
"""
from __future__ import annotations

import datetime
import math
import time
from pathlib import Path

import numpy as np

from phonjax.convert._util import ConversionError, irreps_str, sha256_file
from phonjax.convert.sevennet_checkpoint import (SEVENNET_0_SHA256, SevenNetCheckpoint, default_checkpoint,
                                                 load_torch_model)

from phonjax.models.nequip.nn.config import UnsupportedFeature

#: e3nn-torch normalize2mom(SiLU) (Monte Carlo, seed 0); checked against the loaded modules.
C_SILU = 1.6791767923989418
def read_checkpoint(checkpoint=None) -> SevenNetCheckpoint:
    """Architecture dict + float64 numpy weights of a SevenNet checkpoint (default SevenNet-0)."""
    import sevenn

    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    model, config = load_torch_model(path)
    arch = architecture(model, config)
    weights = {k: v.detach().cpu().double().numpy().copy() for k, v in model.state_dict().items()}
    return SevenNetCheckpoint(arch=arch, weights=weights, source=str(path), sha256=sha256_file(path),
                              sevenn_version=str(sevenn.__version__),
                              checkpoint_version=str(config.get("version", "?")), torch_model=model,
                              config=config)


def _check_supported(mods, config: dict) -> int:
    """Raise UnsupportedFeature for SevenNet options phonjax does not implement; returns the layer count."""
    g = config.get
    if g("_model_type", "E3_equivariant_model") != "E3_equivariant_model":
        raise UnsupportedFeature(f"SevenNet model type {g('_model_type')!r}")
    if g("interaction_type", "nequip") != "nequip":
        raise UnsupportedFeature(f"SevenNet interaction_type {g('interaction_type')!r}")
    if g("use_modality", False):
        raise UnsupportedFeature("multi-fidelity (modal) SevenNet models")
    if g("use_bias_in_linear", False):
        raise UnsupportedFeature("use_bias_in_linear=True")
    if g("readout_as_fcn", False):
        raise UnsupportedFeature("readout_as_fcn=True (FCN readout)")
    if g("is_parity", False):
        raise UnsupportedFeature("is_parity=True (parity-labelled SevenNet)")
    if any(k in mods for k in ("force_output",)) and type(mods["force_output"]).__name__ not in (
            "ForceStressOutputFromEdge", "ForceStressOutput", "ForceOutput"):
        raise UnsupportedFeature(f"force output {type(mods['force_output']).__name__}")
    n_layer = int(config["num_convolution_layer"])
    sc = config.get("self_connection_type", "nequip")
    sc = [sc] * n_layer if isinstance(sc, str) else list(sc)
    if any(s != "linear" for s in sc):
        raise UnsupportedFeature(f"self_connection_type {sc} (only 'linear' is implemented)")
    expected = ["edge_embedding", "onehot_idx_to_onehot", "onehot_to_feature_x"]
    for t in range(n_layer):
        expected += [f"{t}_{n}" for n in ("self_connection_intro", "self_interaction_1", "convolution",
                                          "self_interaction_2", "self_connection_outro", "equivariant_gate")]
    expected += ["reduce_input_to_hidden", "reduce_hidden_to_energy", "rescale_atomic_energy",
                 "reduce_total_enegy", "force_output"]
    if list(mods) != expected:
        raise UnsupportedFeature(f"SevenNet module sequence {list(mods)} (expected {expected})")
    return n_layer


def _type_names(model, config: dict) -> list[str]:
    """Chemical symbols by sevenn's one-hot index."""
    from ase.data import atomic_numbers

    type_map = dict(model.type_map)
    species = list(config["chemical_species"])
    names = [None] * len(type_map)
    for z, idx in type_map.items():
        names[idx] = _symbol(z)
    if None in names or sorted(names) != sorted(species):
        raise ConversionError("type_map and chemical_species disagree")
    for s in names:
        if s not in atomic_numbers:
            raise ConversionError(f"type {s!r} is not a chemical symbol")
    return names


def _edges(ee, config: dict) -> tuple[float, str]:
    """(r_max Å, SH irreps) of the edge embedding after checking basis, cutoff and SH normalisation."""
    if type(ee.basis_function).__name__ != "BesselBasis":
        raise UnsupportedFeature(f"radial basis {type(ee.basis_function).__name__}")
    if type(ee.cutoff_function).__name__ != "XPLORCutoff":
        raise UnsupportedFeature(f"cutoff function {type(ee.cutoff_function).__name__} (only XPLOR)")
    r_max = float(ee.cutoff_function.r_cut)
    if abs(r_max - float(config["cutoff"])) > 1e-12 or abs(float(ee.basis_function.prefactor) - 2.0 / r_max) > 1e-12:
        raise ConversionError("inconsistent cutoff")
    sph = ee.spherical
    if not (sph.sph.normalize and sph.normalization == "component"):
        raise UnsupportedFeature("spherical harmonics without normalize=True / component normalisation")
    sh_irreps = irreps_str(sph.irreps_out)
    if any(p != 1 for _, _, p in _parse(sh_irreps)):
        raise UnsupportedFeature(f"SH irreps {sh_irreps}")
    return r_max, sh_irreps


def _layer(mods, t: int) -> tuple[tuple[int, ...], float, str]:
    """(radial MLP dims, avg_num_neigh denominator, gate output irreps) of interaction layer ``t``."""
    conv = mods[f"{t}_convolution"]
    fc = conv.weight_nn
    for k in range(len(fc.hs) - 1):
        layer = getattr(fc, f"layer{k}")
        if (layer.var_in, layer.var_out) != (1, 1):
            raise UnsupportedFeature("radial FullyConnectedNet with variance_in/out ≠ 1")
        act = layer.act
        if k < len(fc.hs) - 2:
            if act is None or not _is_silu(getattr(act, "f", None)) or abs(act.cst - C_SILU) > 1e-15:
                raise UnsupportedFeature(f"radial activation {act} (only normalised SiLU)")
        elif act is not None:
            raise UnsupportedFeature("radial FullyConnectedNet with output activation")
    gate = mods[f"{t}_equivariant_gate"].gate
    for a in list(gate.act_scalars.acts) + list(gate.act_gates.acts):
        if not _is_silu(getattr(a, "f", None)) or abs(a.cst - C_SILU) > 1e-15:
            raise UnsupportedFeature(f"gate activation {a} (only normalised SiLU for even scalars)")
    if any(i.connection_mode != "uvu" or not i.has_weight for i in conv.convolution.instructions):
        raise UnsupportedFeature("convolution tensor product other than weighted uvu")
    return tuple(int(h) for h in fc.hs), float(conv.denominator.detach().double().item()), irreps_str(gate.irreps_out)


def architecture(model, config: dict) -> dict:
    """Plain-dict architecture of a built SevenNet model; UnsupportedFeature names anything else.

    Keys: type_names (tuple of symbols, index = sevenn's one-hot index), r_max, r_on (XPLOR), num_bessels,
    sh_irreps, embed_width, hidden_irreps (per layer, gate outputs), radial_dims (per layer),
    avg_num_neigh (per layer, messages divided by it), readout_dims, layer_modules (names).
    """
    mods = model._modules
    n_layer = _check_supported(mods, config)
    names = _type_names(model, config)
    ee = mods["edge_embedding"]
    r_max, sh_irreps = _edges(ee, config)
    emb = mods["onehot_to_feature_x"].linear
    if str(emb.irreps_in) != f"{len(names)}x0e":
        raise ConversionError(f"embedding input {emb.irreps_in} for {len(names)} types")
    embed_irreps = _parse(irreps_str(emb.irreps_out))
    if len(embed_irreps) != 1 or embed_irreps[0][1:] != (0, 1):
        raise UnsupportedFeature(f"embedding output {emb.irreps_out}")
    radial, denom, hidden = zip(*[_layer(mods, t) for t in range(n_layer)]) if n_layer else ((), (), ())
    readout = (mods["reduce_input_to_hidden"].linear, mods["reduce_hidden_to_energy"].linear)
    readout_dims = (_parse(irreps_str(readout[0].irreps_in))[0][0], _parse(irreps_str(readout[0].irreps_out))[0][0],
                    _parse(irreps_str(readout[1].irreps_out))[0][0])
    if readout_dims[2] != 1:
        raise UnsupportedFeature(f"readout to {readout[1].irreps_out}")
    rs = mods["rescale_atomic_energy"]
    if type(rs).__name__ != "SpeciesWiseRescale":
        raise UnsupportedFeature(f"energy rescale {type(rs).__name__} (only SpeciesWiseRescale)")
    return dict(
        type_names=tuple(names), r_max=r_max, r_on=float(ee.cutoff_function.r_on),
        num_bessels=int(ee.basis_function.num_basis), sh_irreps=sh_irreps,
        embed_width=int(embed_irreps[0][0]), hidden_irreps=tuple(hidden), radial_dims=tuple(radial),
        avg_num_neigh=tuple(denom), readout_dims=tuple(int(x) for x in readout_dims), num_layers=n_layer,
        bessel_trainable=bool(ee.basis_function.coeffs.requires_grad),
        shift_scale_trainable=bool(rs.shift.requires_grad),
    )


def _parse(s):
    from phonjax.models.nequip.nn import irreps as I

    return I.parse_irreps(s)


def _is_silu(f) -> bool:
    import torch

    return f is torch.nn.functional.silu or isinstance(f, torch.nn.SiLU)


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def uvu_torch_to_phonjax_columns(conv_module) -> np.ndarray:
    """Column permutation ``perm`` of a sevenn convolution's per-edge weights such that
    ``w_phonjax = w_torch[:, perm]``: torch lays the weights out per instruction *sorted by output slot*
    (sevenn ≥ 0.11), phonjax (like nequip) per instruction in creation order (i_in, j_sh, l_out)."""
    from phonjax.models.nequip.nn import irreps as I

    kw = conv_module.convolution_kwargs
    irr_in = I.parse_irreps(irreps_str(kw["irreps_in1"]))
    irr_sh = I.parse_irreps(irreps_str(kw["irreps_in2"]))
    irr_mid = I.parse_irreps(irreps_str(kw["irreps_out"]))
    torch_ins = [(i.i_in1, i.i_in2, i.i_out) for i in conv_module.convolution.instructions]
    offs, o = [], 0
    for i_in1, _, _ in torch_ins:
        offs.append(o)
        o += irr_in[i_in1][0]
    ins, mid, mid_sorted, p = I.uvu_instructions(irr_in, irr_sh, I.simplify(irr_mid))
    if [m for m in mid_sorted] != list(irr_mid):
        raise ConversionError(f"TP output slots differ: torch {irr_mid}, phonjax {mid_sorted}")
    perm = []
    for i, j, k in ins:
        key = (i, j, p[k])
        if key not in torch_ins:
            raise ConversionError(f"TP path {key} missing in torch")
        a = offs[torch_ins.index(key)]
        perm.extend(range(a, a + irr_in[i][0]))
    if len(perm) != o or len(ins) != len(torch_ins):
        raise ConversionError("TP instruction sets differ between torch and phonjax")
    return np.asarray(perm)


# -- mapping onto phonjax ----------------------------------------------------------------------------
def model_config(arch: dict, dtype: str = "float32"):
    """The phonjax :class:`ModelConfig` (SevenNet variants) of an architecture dict."""
    from phonjax.models.nequip.nn.config import ModelConfig

    n = arch["num_layers"]
    radial = arch["radial_dims"]
    if any(len(set(d[1:-1])) > 1 for d in radial):
        raise UnsupportedFeature(f"radial MLP with unequal hidden widths {radial}")
    if any(d[0] != arch["num_bessels"] for d in radial):
        raise ConversionError("radial MLP input width differs from the number of Bessel functions")
    avg = arch["avg_num_neigh"]
    if len(set(avg)) != 1:
        raise UnsupportedFeature(f"per-layer avg_num_neigh {avg}")
    r_in, r_hidden, r_out = arch["readout_dims"]
    hid = _parse(arch["hidden_irreps"][-1])
    if r_in != sum(m for m, _, _ in hid):
        raise ConversionError("readout input width differs from the last layer's width")
    return ModelConfig(
        type_names=arch["type_names"], r_max=arch["r_max"], dtype=dtype,
        feature_irreps_hidden=arch["hidden_irreps"],
        radial_mlp_depth=tuple(len(d) - 2 for d in radial), radial_mlp_width=tuple(d[1] for d in radial),
        avg_num_neighbors=float(avg[0]), irreps_edge_sh=arch["sh_irreps"],
        type_embed_num_features=arch["embed_width"], num_bessels=arch["num_bessels"],
        bessel_trainable=arch["bessel_trainable"], convnet_sc=True, sc_first_layer=True, convnet_resnet=False,
        nonlinearity_scalars=("silu", "tanh"), nonlinearity_gates=("silu", "tanh"),
        readout_hidden=(r_hidden,), readout_nonlinearity=None,
        per_type_energy_scales_trainable=arch["shift_scale_trainable"],
        per_type_energy_shifts_trainable=arch["shift_scale_trainable"],
        zbl=False, embedding="one_hot_linear", self_connection="linear", radial_mlp="e3nn_fcnet",
        cutoff="xplor", cutoff_on=arch["r_on"], message_norm="linear", parity_labels="all_even",
    )


def map_params(ck: SevenNetCheckpoint, config) -> dict:
    """phonjax parameter pytree (numpy) from the checkpoint's weights. Mapping plan (torch → phonjax):

    onehot_to_feature_x.linear.weight (T·F)             → type_embed/weight
    edge_embedding.basis_function.coeffs c (n)          → bessel_encode/bessel_weights = c·r_max/π (1, n) f64
    {t}_self_connection_intro.linear.weight             → layer{t}_convnet/conv/sc/weight
    {t}_self_interaction_1.linear.weight                → layer{t}_convnet/conv/linear_1/weight
    {t}_convolution.weight_nn.layer{k}.weight           → layer{t}_convnet/conv/edge_mlp/weight_{k}
                                                          (last layer: columns permuted, sorted → creation order)
    {t}_convolution.denominator                         → config.avg_num_neighbors (message_norm="linear")
    {t}_self_interaction_2.linear.weight                → layer{t}_convnet/conv/linear_2/weight
    reduce_input_to_hidden / reduce_hidden_to_energy    → per_atom_energy_readout/weight_0 / weight_1
    rescale_atomic_energy.scale / .shift                → per_type_energy_scale_shift/scales / shifts (f64)
    """
    import jax

    from phonjax.models.nequip.nn.nequip import init_params

    W = ck.weights
    dt = np.dtype(config.dtype)
    T, F = len(config.type_names), config.type_embed_num_features
    a = ck.arch
    p = {"type_embed": {"weight": W["onehot_to_feature_x.linear.weight"].astype(dt)},
         "bessel_encode": {"bessel_weights": (W["edge_embedding.basis_function.coeffs"] * a["r_max"] / math.pi
                                              ).reshape(1, -1).astype(np.float64)}}
    for t in range(a["num_layers"]):
        conv = ck.torch_model._modules[f"{t}_convolution"]
        perm = uvu_torch_to_phonjax_columns(conv)
        n_fc = len(a["radial_dims"][t]) - 1
        mlp = {}
        for k in range(n_fc):
            w = W[f"{t}_convolution.weight_nn.layer{k}.weight"]
            mlp[f"weight_{k}"] = (w[:, perm] if k == n_fc - 1 else w).astype(dt)
        p[f"layer{t}_convnet"] = {"conv": {
            "sc": {"weight": W[f"{t}_self_connection_intro.linear.weight"].astype(dt)},
            "linear_1": {"weight": W[f"{t}_self_interaction_1.linear.weight"].astype(dt)},
            "edge_mlp": mlp,
            "linear_2": {"weight": W[f"{t}_self_interaction_2.linear.weight"].astype(dt)},
        }}
    r_in, r_h, r_out = a["readout_dims"]
    p["per_atom_energy_readout"] = {
        "weight_0": W["reduce_input_to_hidden.linear.weight"].reshape(r_in, r_h).astype(dt),
        "weight_1": W["reduce_hidden_to_energy.linear.weight"].reshape(r_h, r_out).astype(dt)}
    p["per_type_energy_scale_shift"] = {"scales": W["rescale_atomic_energy.scale"].astype(np.float64),
                                        "shifts": W["rescale_atomic_energy.shift"].astype(np.float64)}
    # every leaf must match the phonjax architecture exactly (names, shapes, dtypes)
    expected = jax.eval_shape(lambda: init_params(config))
    flat_p = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(p)[0]}
    flat_e = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    if set(flat_p) != set(flat_e):
        raise ConversionError(f"parameter names differ: missing {sorted(set(flat_e) - set(flat_p))}, "
                              f"unexpected {sorted(set(flat_p) - set(flat_e))}")
    for k, v in flat_p.items():
        if v.shape != flat_e[k].shape or v.dtype != flat_e[k].dtype:
            raise ConversionError(f"{k}: {v.shape} {v.dtype}, phonjax expects {flat_e[k].shape} {flat_e[k].dtype}")
    used = {k for k in W if not k.endswith(("bias", "output_mask")) and "_w3j_" not in k
            and not k.endswith("convolution.convolution.weight") and not k.endswith("gate.mul.weight")
            and not k.endswith("convolution.denominator")}
    n_mapped = sum(int(np.size(v)) for v in flat_p.values())
    n_used = sum(int(np.size(W[k])) for k in used)
    if n_mapped != n_used:
        raise ConversionError(f"{n_used} torch weights but {n_mapped} phonjax parameters")
    return p


def from_checkpoint(ck: SevenNetCheckpoint, dtype: str = "float32"):
    """In-memory phonjax :class:`Model` of a read checkpoint (``dtype`` "float32" or "float64")."""
    import jax.numpy as jnp
    import jax

    from phonjax.models.nequip.model import Model

    config = model_config(ck.arch, dtype)
    params = jax.tree_util.tree_map(jnp.asarray, map_params(ck, config))
    meta = dict(source="sevennet", model_name="SevenNet-0" if ck.sha256 == SEVENNET_0_SHA256 else "SevenNet",
                source_file=Path(ck.source).name, source_sha256=ck.sha256, sevenn_version=ck.sevenn_version,
                checkpoint_version=ck.checkpoint_version, source_dtype="float32", license="MIT (sevenn)",
                level_of_theory="PBE/PBE+U (MPtrj)" if ck.sha256 == SEVENNET_0_SHA256 else None,
                n_params_torch=int(sum(p.numel() for p in ck.torch_model.parameters())),
                message="SevenNet checkpoint weights (no EMA in SevenNet checkpoints)")
    return Model(config, params, meta)


def convert_sevennet(checkpoint=None, out=None, *, dtype: str = "float32", overwrite: bool = False,
                     check: bool = True):
    """Convert a SevenNet checkpoint (default: SevenNet-0 11Jul2024 from the installed ``sevenn``) into the
    phonjax model directory ``out`` (default :func:`default_model_dir`). Returns the :class:`Model`.

    check: compare energy/forces with torch (float64) on a small two-species crystal before writing
    (bounds: 1e-5 eV/atom and 1e-5 eV/Å for float32, 1e-9 for float64); ConversionError otherwise.
    """
    t0 = time.perf_counter()
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ConversionError(f"{checkpoint}: no such file")
    outp = Path(out) if out is not None else default_model_dir()
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())) and not overwrite:
        raise FileExistsError(f"{outp} exists and is not empty")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    ck = read_checkpoint(checkpoint)
    model = from_checkpoint(ck, dtype)
    meta = dict(model.metadata)
    if check:
        from phonjax.convert.sevennet_torch import self_check

        errs = self_check(ck.torch_model, model)
        tol = 1e-5 if dtype == "float32" else 1e-9
        if not (errs["energy_per_atom"] <= tol and errs["forces"] <= tol):
            raise ConversionError(f"converted model disagrees with torch: {errs}")
        meta["self_check"] = errs
    meta.update(conversion_date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                conversion_seconds=round(time.perf_counter() - t0, 2))
    from phonjax.models.nequip.model import Model

    model = Model(model.config, model.params, meta)
    model.save(outp, overwrite=overwrite)
    return model


def default_model_dir() -> Path:
    """Cache location of the converted SevenNet-0 (``phonjax.defaults.default_model_dir``:
    ``$PHONJAX_MODEL``, else ``$XDG_CACHE_HOME/phonjax/models/sevennet-0``, else ``~/.cache/...``)."""
    from phonjax.defaults import default_model_dir as _d

    return _d()


__all__ = ["convert_sevennet", "default_model_dir", "from_checkpoint", "read_checkpoint",
           "load_torch_model", "architecture", "model_config", "map_params", "default_checkpoint",
           "uvu_torch_to_phonjax_columns", "SevenNetCheckpoint",
           "ConversionError", "UnsupportedFeature"]
