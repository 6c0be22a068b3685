"""SevenNet (PyPI ``sevenn``) → phonjax: the offline embedded pretrained models (SevenNet-0 of 11 Jul and 22 May
2024, SevenNet-l3i5 — the default model, :mod:`phonjax.defaults`).

``convert_sevennet(checkpoint=None, out)`` loads a SevenNet checkpoint (default: the default model's, shipped
inside the installed ``sevenn`` wheel), reads its architecture from the *built torch modules*
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

Modules: :mod:`convert.sevennet_read` (weights-only reading, architecture), this one (mapping, conversion),
:mod:`convert.sevennet_torch` (torch reference energies). torch and sevenn are imported only when called.
"""
from __future__ import annotations

import datetime
import math
import time
from pathlib import Path

import numpy as np

from phonjax.convert._common import ConversionError, check_output_dir, compare_energy_forces
from phonjax.convert._common import irreps_str as _irr
from phonjax.convert.sevennet_read import (C_SILU, KNOWN_CHECKPOINTS, PRETRAINED, SEVENNET_0_RELPATH,  # noqa: F401
                                           SEVENNET_0_SHA256,
                                           SevenNetCheckpoint, architecture, checkpoint_path, default_checkpoint,
                                           load_torch_model, read_checkpoint)
from phonjax.convert.sevennet_torch import torch_energy_forces_stress, torch_model_as

from phonjax.models.nequip.nn.config import UnsupportedFeature


def uvu_torch_to_phonjax_columns(conv_module) -> np.ndarray:
    """Column permutation ``perm`` of a sevenn convolution's per-edge weights such that
    ``w_phonjax = w_torch[:, perm]``: torch lays the weights out per instruction *sorted by output slot*
    (sevenn ≥ 0.11), phonjax (like nequip) per instruction in creation order (i_in, j_sh, l_out)."""
    from phonjax.models.nequip.nn import irreps as I

    kw = conv_module.convolution_kwargs
    irr_in = I.parse_irreps(_irr(kw["irreps_in1"]))
    irr_sh = I.parse_irreps(_irr(kw["irreps_in2"]))
    irr_mid = I.parse_irreps(_irr(kw["irreps_out"]))
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
def modality_index(arch: dict, modal: str | None) -> int | None:
    """Index of the fidelity ``modal`` of a multi-fidelity architecture (None: its default), None for a
    single-fidelity one (where a ``modal`` is refused)."""
    names = arch.get("modal_names", ())
    if not names:
        if modal is not None:
            raise ConversionError(f"--modal {modal}: this checkpoint has a single fidelity")
        return None
    if modal is None:
        modal = arch.get("default_modal")
        if modal is None:
            raise ConversionError(f"a multi-fidelity checkpoint without a default: choose --modal from {list(names)}")
    match = [i for i, n in enumerate(names) if n.lower() == str(modal).lower()]
    if not match:
        raise ConversionError(f"--modal {modal}: not a fidelity of this checkpoint (one of {list(names)})")
    return match[0]


def model_config(arch: dict, dtype: str = "float32", modal: str | None = None):
    """The phonjax :class:`ModelConfig` (SevenNet variants) of an architecture dict; ``modal``: the fidelity of a
    multi-fidelity checkpoint (default: its own default)."""
    from phonjax.models.nequip.nn.config import ModelConfig

    mi = modality_index(arch, modal)
    onehot = () if mi is None else tuple(float(i == mi) for i in range(len(arch["modal_names"])))

    radial = arch["radial_dims"]
    if any(len(set(d[1:-1])) > 1 for d in radial):
        raise UnsupportedFeature(f"radial MLP with unequal hidden widths {radial}")
    if any(d[0] != arch["num_bessels"] for d in radial):
        raise ConversionError("radial MLP input width differs from the number of Bessel functions")
    avg = arch["avg_num_neigh"]
    if len(set(avg)) != 1:
        raise UnsupportedFeature(f"per-layer avg_num_neigh {avg}")
    r_in, r_hidden, r_out = arch["readout_dims"]
    from phonjax.models.nequip.nn import irreps as I

    hid = I.parse_irreps(arch["hidden_irreps"][-1])
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
        cutoff=arch["cutoff"], cutoff_on=arch["r_on"], message_norm="linear", parity_labels="all_even",
        sh_normalize=arch["sh_normalize"], modal_onehot=onehot,
        modal_linears=arch.get("modal_linears", ()) if onehot else (),
        **({"polynomial_cutoff_p": arch["poly_p"]} if arch["poly_p"] is not None else {}),
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

    Multi-fidelity (config.modal_onehot): the linears that take the fidelity one-hot keep their weights as they
    are (their inputs gain the same Mx0e block, :class:`ModelConfig`); a modality-wise shift or scale (M, T) is
    its row of the chosen fidelity.
    """
    import jax

    from phonjax.models.nequip.nn.nequip import init_params

    W = ck.weights
    dt = np.dtype(config.dtype)
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
        "weight_0": W["reduce_input_to_hidden.linear.weight"].reshape(-1, r_h).astype(dt),
        "weight_1": W["reduce_hidden_to_energy.linear.weight"].reshape(r_h, r_out).astype(dt)}
    n_modal = len(config.modal_onehot)
    mi = config.modal_onehot.index(1.0) if n_modal else None
    rows = {k: W[f"rescale_atomic_energy.{k}"] for k in ("scale", "shift")}
    dropped = 0
    for k, v in rows.items():
        if a.get(f"modal_wise_{k}") and mi is not None:
            if v.ndim != 2 or v.shape[0] != n_modal:
                raise ConversionError(f"modality-wise {k} of shape {v.shape} for {n_modal} fidelities")
            rows[k], dropped = v[mi], dropped + v.size - v[mi].size
    p["per_type_energy_scale_shift"] = {"scales": rows["scale"].astype(np.float64),
                                        "shifts": rows["shift"].astype(np.float64)}
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
    n_used = sum(int(np.size(W[k])) for k in used) - dropped
    if n_mapped != n_used:
        raise ConversionError(f"{n_used} torch weights but {n_mapped} phonjax parameters")
    return p


def from_checkpoint(ck: SevenNetCheckpoint, dtype: str = "float32", modal: str | None = None):
    """In-memory phonjax :class:`Model` of a read checkpoint (``dtype`` "float32" or "float64"; ``modal``: the
    fidelity of a multi-fidelity checkpoint, default its own default, e.g. "PBE" for SevenNet-MF-0)."""
    import jax.numpy as jnp
    import jax

    from phonjax.models.nequip.model import Model

    config = model_config(ck.arch, dtype, modal)
    params = jax.tree_util.tree_map(jnp.asarray, map_params(ck, config))
    name, theory = KNOWN_CHECKPOINTS.get(ck.sha256, ("SevenNet", None))
    oh = config.modal_onehot
    fidelity = {"modality": ck.arch["modal_names"][oh.index(1.0)]} if oh else {}
    if fidelity:
        theory = f"{fidelity['modality']} fidelity of the multi-fidelity training data"
    meta = dict(source="sevennet", model_name=name,
                source_file=Path(ck.source).name, source_sha256=ck.sha256, sevenn_version=ck.sevenn_version,
                checkpoint_version=ck.checkpoint_version, source_dtype="float32", license="MIT (sevenn)",
                level_of_theory=theory,
                n_params_torch=int(sum(p.numel() for p in ck.torch_model.parameters())),
                message="SevenNet checkpoint weights (no EMA in SevenNet checkpoints)", **fidelity)
    return Model(config, params, meta)


def convert_sevennet(checkpoint=None, out=None, *, dtype: str = "float32", overwrite: bool = False,
                     check: bool = True, modal: str | None = None):
    """Convert a SevenNet checkpoint (a file or a name of :data:`PRETRAINED`; default: the default model's,
    :data:`phonjax.defaults.DEFAULT_MODEL`, from the installed ``sevenn``) into the
    phonjax model directory ``out`` (default :func:`default_model_dir`). Returns the :class:`Model`.

    check: compare energy/forces with torch (float64) on a small two-species crystal before writing
    (bounds: 1e-5 eV/atom and 1e-5 eV/Å for float32, 1e-9 for float64); ConversionError otherwise.
    modal: the fidelity of a multi-fidelity checkpoint (SevenNet-MF-0: "PBE" — its default — or "R2SCAN");
    it is fixed in the converted model (metadata ``modality``).
    """
    t0 = time.perf_counter()
    checkpoint = checkpoint_path(checkpoint)  # a file, or one of sevenn's pretrained names ("7net-l3i5", ...)
    outp = check_output_dir(out if out is not None else default_model_dir(), overwrite)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    ck = read_checkpoint(checkpoint)
    model = from_checkpoint(ck, dtype, modal)
    meta = dict(model.metadata)
    if check:
        errs = self_check(ck.torch_model, model, meta.get("modality"))
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
    """Cache location of the converted default model (``phonjax.defaults.default_model_dir``:
    ``$PHONJAX_MODEL``, else ``$XDG_CACHE_HOME/phonjax/models/sevennet-l3i5``, else ``~/.cache/...``)."""
    from phonjax.defaults import default_model_dir as _d

    return _d()


def self_check(torch_model, model, modal: str | None = None) -> dict:
    """|ΔE|/atom and max |ΔF| between torch (float64, fidelity ``modal``) and ``model`` on a rattled rock-salt
    LiF-like cell."""
    from ase.build import bulk

    picks = [s for s in ("Li", "F") if s in model.type_names] or list(model.type_names[:1])
    atoms = bulk("NaCl", "rocksalt", a=4.06).repeat((1, 1, 2))
    atoms.set_chemical_symbols([picks[i % len(picks)] for i in range(len(atoms))])
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    return compare_energy_forces(lambda at: torch_energy_forces_stress(torch_model, at, "float64", modal)[:2],
                                 model, atoms)


__all__ = ["convert_sevennet", "default_model_dir", "from_checkpoint", "modality_index", "read_checkpoint",
           "load_torch_model", "architecture", "model_config", "map_params", "default_checkpoint",
           "torch_energy_forces_stress", "torch_model_as", "uvu_torch_to_phonjax_columns", "self_check", "SevenNetCheckpoint",
           "ConversionError", "UnsupportedFeature"]
