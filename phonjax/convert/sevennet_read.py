"""Reading SevenNet checkpoints: the built torch model (sevenn's own builder, so its compatibility patches of old
checkpoints apply), its architecture as a plain dict, and its weights as float64 numpy arrays.

The checkpoint is unpickled weights-only (:func:`convert._common.safe_torch_load`: containers, numpy arrays
and tensors; a pickle naming anything else is refused before it runs) and handed to sevenn already loaded.
torch and sevenn are imported only when called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phonjax.convert._common import ConversionError, safe_torch_load, sha256_file
from phonjax.convert._common import irreps_str as _irr

from phonjax.models.nequip.nn.config import UnsupportedFeature

#: e3nn-torch normalize2mom(SiLU) (Monte Carlo, seed 0); checked against the loaded modules.
C_SILU = 1.6791767923989418
#: relative path of SevenNet-0 (11Jul2024) inside the installed ``sevenn`` package
SEVENNET_0_RELPATH = ("pretrained_potentials", "SevenNet_0__11Jul2024", "checkpoint_sevennet_0.pth")
#: sha256 of that file in sevenn 0.13.0 (identifies SevenNet-0 in the metadata)
SEVENNET_0_SHA256 = "7052cb42b7b3be42b40b97fa0d21077a48c54b5548948fc4dcf346629f813c36"
#: sha256 of the checkpoints the sevenn wheel ships → (model name, level of theory of the training data)
KNOWN_CHECKPOINTS = {
    SEVENNET_0_SHA256: ("SevenNet-0", "PBE/PBE+U (MPtrj)"),
    "81791329b37d445f46b531578c182c41792d98c7814222c9e5dde276402225fd": ("SevenNet-MF-0",
                                                                         "the chosen fidelity (modality)"),
    "5d389fafd512e6ae2830d74d0b66ffc49a55d3832653ff8e7bf7f1343013c1d1": ("SevenNet-0 (22May2024)",
                                                                         "PBE/PBE+U (MPtrj)"),
    "a7ff190d41efe5b8317a03d20a468e4036a1a3e64e0b14fdbab64ac3f4bfc09d": ("SevenNet-l3i5", "PBE/PBE+U (MPtrj)"),
}



@dataclass(frozen=True)
class SevenNetCheckpoint:
    """What the converter reads from a checkpoint.

    arch: plain dict describing the architecture (see :func:`architecture`).
    weights: state-dict entries as float64 numpy arrays, after sevenn's own compatibility patches
      (old checkpoints have unsorted TP weights and flipped w3j signs; sevenn fixes them at build time).
    source: checkpoint path; sha256: its hash; sevenn_version: version of the reading package;
    checkpoint_version: version that wrote the checkpoint. torch_model: the model sevenn builds from it
    (reference for checks); config: sevenn's (patched) config dict.
    """

    arch: dict
    weights: dict
    source: str
    sha256: str
    sevenn_version: str
    checkpoint_version: str
    torch_model: object = field(default=None, repr=False, compare=False)
    config: dict = field(default_factory=dict, repr=False, compare=False)


# -- reading ---------------------------------------------------------------------------------------
def default_checkpoint() -> Path:
    """Path of SevenNet-0 (11Jul2024) inside the installed ``sevenn`` package."""
    try:
        import sevenn
    except ImportError as e:  # pragma: no cover - sevenn is a project dependency
        raise ConversionError(f"the 'sevenn' package is needed to convert SevenNet checkpoints ({e})") from None
    p = Path(sevenn.__file__).parent.joinpath(*SEVENNET_0_RELPATH)
    if not p.is_file():
        raise ConversionError(f"SevenNet-0 checkpoint not found in the installed sevenn package ({p})")
    return p


#: sevenn's names of the checkpoints its wheel ships (lower case) → path inside the package
PRETRAINED = {"7net-0": SEVENNET_0_RELPATH,
              "7net-0_22may2024": ("pretrained_potentials", "SevenNet_0__22May2024", "checkpoint_sevennet_0.pth"),
              "7net-l3i5": ("pretrained_potentials", "SevenNet_l3i5", "checkpoint_l3i5.pth"),
              "7net-mf-0": ("pretrained_potentials", "SevenNet_MF_0", "checkpoint_sevennet_mf_0.pth")}


def checkpoint_path(checkpoint=None) -> Path:
    """A checkpoint file: ``checkpoint`` itself, one of sevenn's pretrained names (:data:`PRETRAINED`, e.g.
    "7net-l3i5"), or the default model's checkpoint (:data:`phonjax.defaults.DEFAULT_MODEL`) when None."""
    if checkpoint is None:
        from phonjax.defaults import DEFAULT_MODEL
        checkpoint = DEFAULT_MODEL
    path = Path(checkpoint)
    if path.is_file():
        return path
    rel = PRETRAINED.get(str(checkpoint).lower())
    if rel is not None:
        import sevenn
        p = Path(sevenn.__file__).parent.joinpath(*rel)
        if p.is_file():
            return p
        raise ConversionError(f"{checkpoint}: not in this sevenn wheel ({p})")
    raise ConversionError(f"{path}: no such file (or one of sevenn's pretrained names: {', '.join(PRETRAINED)})")


def load_torch_model(checkpoint=None):
    """(torch AtomGraphSequential in eval mode, sevenn config dict) of ``checkpoint`` (see
    :func:`checkpoint_path`; None: the default model's)."""
    import warnings

    path = checkpoint_path(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        # SevenNet checkpoints hold float32 weights and sevenn builds its modules in torch's *default* dtype:
        # build under float32 whatever an earlier caller (nequip's set_global_state sets float64) left behind.
        loaded = safe_torch_load(path, "readable SevenNet checkpoint")  # weights-only: refused before anything runs
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            cp = _sevenn_checkpoint(path, loaded)
            config = cp.config
            model = cp.build_model()
        except (UnsupportedFeature, ConversionError):
            raise
        except Exception as e:
            raise ConversionError(f"{path}: not a readable SevenNet checkpoint ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
        finally:
            torch.set_default_dtype(previous)
    model.eval()
    model._phonjax_source = str(path)  # lets torch_model_as rebuild a copy where deepcopy is impossible
    return model, config


def _sevenn_checkpoint(path: Path, loaded: dict):
    """sevenn's ``SevenNetCheckpoint`` of ``path`` with its own config/state-dict processing applied to the
    already (weights-only) loaded dict: sevenn's loader would unpickle the file again with
    ``weights_only=False``, so it is handed ``loaded`` instead for the duration of the call."""
    import sevenn.checkpoint as sc

    if not isinstance(loaded, dict):
        raise ConversionError(f"{path}: not a SevenNet checkpoint (a {type(loaded).__name__}, not a dict)")
    if not callable(getattr(sc, "torch_load", None)):
        raise ConversionError(f"{path}: this sevenn version reads checkpoints in a way phonjax does not know")
    cp = sc.SevenNetCheckpoint(str(path))
    original = sc.torch_load
    sc.torch_load = lambda *args, **kwargs: loaded
    try:
        cp.config  # noqa: B018  (runs sevenn's _load on ``loaded``)
    finally:
        sc.torch_load = original
    return cp


def read_checkpoint(checkpoint=None) -> SevenNetCheckpoint:
    """Architecture dict + float64 numpy weights of a SevenNet checkpoint (see :func:`checkpoint_path`; None: the
    default model's)."""
    import sevenn

    path = checkpoint_path(checkpoint)
    model, config = load_torch_model(path)
    arch = architecture(model, config)
    weights = {k: v.detach().cpu().double().numpy().copy() for k, v in model.state_dict().items()}
    return SevenNetCheckpoint(arch=arch, weights=weights, source=str(path), sha256=sha256_file(path),
                              sevenn_version=str(sevenn.__version__),
                              checkpoint_version=str(config.get("version", "?")), torch_model=model,
                              config=config)


def architecture(model, config: dict) -> dict:
    """Plain-dict architecture of a built SevenNet model; UnsupportedFeature names anything else.

    Keys: type_names (tuple of symbols, index = sevenn's one-hot index), r_max, cutoff ("xplor" | "polynomial"),
    r_on (XPLOR), poly_p (polynomial), num_bessels, sh_irreps, sh_normalize, embed_width, hidden_irreps (per
    layer, gate outputs), radial_dims (per layer), avg_num_neigh (per layer, messages divided by it), readout_dims,
    modal_names (multi-fidelity models' modalities by index, else ()) and, for those, default_modal, modal_linears,
    modal_wise_shift, modal_wise_scale.
    """
    mods = model._modules
    n_layer = _check_config(config, mods)
    _check_module_sequence(mods, n_layer)
    names = _type_names(model, config)
    ee = mods["edge_embedding"]
    edge = _edge_embedding(ee, config)
    embed_width = _embedding_width(mods["onehot_to_feature_x"].linear, len(names))
    hidden, radial, denom = [], [], []
    for t in range(n_layer):
        conv = mods[f"{t}_convolution"]
        radial.append(_radial_dims(conv.weight_nn))
        denom.append(float(conv.denominator.detach().double().item()))
        gate = mods[f"{t}_equivariant_gate"].gate
        _check_gate(gate)
        hidden.append(_irr(gate.irreps_out))
        if any(i.connection_mode != "uvu" or not i.has_weight for i in conv.convolution.instructions):
            raise UnsupportedFeature("convolution tensor product other than weighted uvu")
    readout_dims = _readout_dims(mods["reduce_input_to_hidden"].linear, mods["reduce_hidden_to_energy"].linear)
    rs = mods["rescale_atomic_energy"]
    modal = _modalities(model, config, n_layer)
    if type(rs).__name__ != ("ModalWiseRescale" if modal["modal_names"] else "SpeciesWiseRescale"):
        raise UnsupportedFeature(f"energy rescale {type(rs).__name__} (only SpeciesWiseRescale, and "
                                 "ModalWiseRescale in a multi-fidelity model)")
    return dict(**modal,
        type_names=tuple(names), **edge, num_bessels=int(ee.basis_function.num_basis),
        embed_width=embed_width, hidden_irreps=tuple(hidden), radial_dims=tuple(radial),
        avg_num_neigh=tuple(denom), readout_dims=tuple(int(x) for x in readout_dims), num_layers=n_layer,
        bessel_trainable=bool(ee.basis_function.coeffs.requires_grad),
        shift_scale_trainable=bool(rs.shift.requires_grad),
    )


# -- architecture parts ----------------------------------------------------------------------------
def _check_config(config: dict, mods) -> int:
    """Number of convolution layers, after refusing the config options (and force output module) phonjax does
    not reproduce."""
    g = config.get
    if g("_model_type", "E3_equivariant_model") != "E3_equivariant_model":
        raise UnsupportedFeature(f"SevenNet model type {g('_model_type')!r}")
    if g("interaction_type", "nequip") != "nequip":
        raise UnsupportedFeature(f"SevenNet interaction_type {g('interaction_type')!r}")
    if g("use_modality", False) and g("use_modal_node_embedding", False):
        raise UnsupportedFeature("multi-fidelity SevenNet with a modal node embedding (use_modal_node_embedding)")
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
    return n_layer


def _modalities(model, config: dict, n_layer: int) -> dict:
    """{modal_names (by one-hot index; () for a single-fidelity model), default_modal, modal_linears (phonjax
    names of the linears that take the fidelity one-hot: ModelConfig.modal_linears), modal_wise_shift,
    modal_wise_scale} of a SevenNet model, checked against its built modules."""
    g = config.get
    if not g("use_modality", False):
        return {"modal_names": ()}
    modal_map = dict(getattr(model, "modal_map", None) or g("_modal_map") or {})
    names = [None] * len(modal_map)
    for name, idx in modal_map.items():
        names[int(idx)] = str(name)
    if not names or None in names or len(names) != int(g("_number_of_modalities", len(names))):
        raise ConversionError(f"inconsistent modal map {modal_map}")
    flags = {"linear_1": ("use_modal_self_inter_intro", [f"{t}_self_interaction_1" for t in range(n_layer)]),
             "linear_2": ("use_modal_self_inter_outro", [f"{t}_self_interaction_2" for t in range(n_layer)]),
             "readout": ("use_modal_output_block", ["reduce_input_to_hidden"])}
    linears = []
    for lin, (flag, keys) in flags.items():
        for k in keys:
            if int(getattr(model._modules[k], "num_modalities", 0)) not in ((len(names),) if g(flag) else (0, 1)):
                raise ConversionError(f"{k}: modal inputs disagree with {flag}={g(flag)}")
        if g(flag):
            linears.append(lin)
    default = g("default_modal")
    return {"modal_names": tuple(names), "default_modal": default if default in names else None,
            "modal_linears": tuple(linears), "modal_wise_shift": bool(g("use_modal_wise_shift", False)),
            "modal_wise_scale": bool(g("use_modal_wise_scale", False))}


def _check_module_sequence(mods, n_layer: int) -> None:
    """The model's modules must be exactly SevenNet's E3 sequence with ``n_layer`` interaction blocks."""
    expected = ["edge_embedding", "onehot_idx_to_onehot"] + (["one_hot_modality"] if "one_hot_modality" in mods
                                                              else []) + ["onehot_to_feature_x"]
    for t in range(n_layer):
        expected += [f"{t}_{n}" for n in ("self_connection_intro", "self_interaction_1", "convolution",
                                          "self_interaction_2", "self_connection_outro", "equivariant_gate")]
    expected += ["reduce_input_to_hidden", "reduce_hidden_to_energy", "rescale_atomic_energy",
                 "reduce_total_enegy", "force_output"]
    if list(mods) != expected:
        raise UnsupportedFeature(f"SevenNet module sequence {list(mods)} (expected {expected})")


def _type_names(model, config: dict) -> list[str]:
    """Chemical symbols by sevenn's one-hot index (``model.type_map``: Z → index), checked against the config."""
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


def _edge_embedding(ee, config: dict) -> dict:
    """{r_max (Å), sh_irreps, cutoff ("xplor" | "polynomial"), r_on (XPLOR start, else None), poly_p (polynomial
    envelope exponent, else None), sh_normalize} of the edge embedding ``ee``: Bessel basis, XPLOR or polynomial
    cutoff, component spherical harmonics (of the unit vector, or of the vector itself in older checkpoints) of
    even parity per l."""
    if type(ee.basis_function).__name__ != "BesselBasis":
        raise UnsupportedFeature(f"radial basis {type(ee.basis_function).__name__}")
    cut = ee.cutoff_function
    kind = type(cut).__name__
    if kind == "XPLORCutoff":
        r_max, spec = float(cut.r_cut), {"cutoff": "xplor", "r_on": float(cut.r_on), "poly_p": None}
    elif kind == "PolynomialCutoff":
        r_max, spec = float(cut.cutoff_length), {"cutoff": "polynomial", "r_on": None, "poly_p": float(cut.p)}
    else:
        raise UnsupportedFeature(f"cutoff function {kind} (only XPLOR and polynomial)")
    if abs(r_max - float(config["cutoff"])) > 1e-12 or abs(float(ee.basis_function.prefactor) - 2.0 / r_max) > 1e-12:
        raise ConversionError("inconsistent cutoff")
    sph = ee.spherical
    if sph.normalization != "component":
        raise UnsupportedFeature(f"spherical harmonics normalisation {sph.normalization!r} (only 'component')")
    sh_irreps = _irr(sph.irreps_out)
    if any(p != 1 for _, _, p in _parse(sh_irreps)):
        raise UnsupportedFeature(f"SH irreps {sh_irreps}")
    return {"r_max": r_max, "sh_irreps": sh_irreps, "sh_normalize": bool(sph.sph.normalize), **spec}


def _embedding_width(emb, n_types: int) -> int:
    """Number of scalar features the one-hot → feature linear ``emb`` makes from ``n_types`` one-hot inputs."""
    if str(emb.irreps_in) != f"{n_types}x0e":
        raise ConversionError(f"embedding input {emb.irreps_in} for {n_types} types")
    embed_irreps = _parse(_irr(emb.irreps_out))
    if len(embed_irreps) != 1 or embed_irreps[0][1:] != (0, 1):
        raise UnsupportedFeature(f"embedding output {emb.irreps_out}")
    return int(embed_irreps[0][0])


def _radial_dims(fc) -> tuple[int, ...]:
    """Layer widths of a convolution's radial FullyConnectedNet ``fc`` (variance 1, normalised SiLU between
    layers, none after the last)."""
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
    return tuple(int(h) for h in fc.hs)


def _check_gate(gate) -> None:
    """Every activation of the equivariant gate must be normalised SiLU."""
    for a in list(gate.act_scalars.acts) + list(gate.act_gates.acts):
        if not _is_silu(getattr(a, "f", None)) or abs(a.cst - C_SILU) > 1e-15:
            raise UnsupportedFeature(f"gate activation {a} (only normalised SiLU for even scalars)")


def _readout_dims(to_hidden, to_energy) -> tuple:
    """(input, hidden, output) multiplicities of the two readout linears; the output must be one scalar."""
    readout_dims = (_parse(_irr(to_hidden.irreps_in))[0][0], _parse(_irr(to_hidden.irreps_out))[0][0],
                    _parse(_irr(to_energy.irreps_out))[0][0])
    if readout_dims[2] != 1:
        raise UnsupportedFeature(f"readout to {to_energy.irreps_out}")
    return readout_dims


def _parse(s):
    from phonjax.models.nequip.nn import irreps as I

    return I.parse_irreps(s)


def _is_silu(f) -> bool:
    import torch

    return f is torch.nn.functional.silu or isinstance(f, torch.nn.SiLU)


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


__all__ = ["SevenNetCheckpoint", "default_checkpoint", "load_torch_model", "read_checkpoint", "architecture",
           "C_SILU", "SEVENNET_0_RELPATH", "SEVENNET_0_SHA256"]
