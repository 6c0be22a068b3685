"""ModelConfig: the architecture of a NequIP-family model (readable YAML/JSON, frozen).

Defaults are nequip's (``FullNequIPGNNModel``). The fields marked *variant* are separable choices so
that other members of the family (SevenNet-0: one-hot→linear embedding, plain linear self-connection,
normalised-activation radial MLP, XPLOR cutoff, 1/N message normalisation, two-layer readout, all-even
parity labels) can be expressed as config values; only nequip's values are implemented now and any other
value raises :class:`UnsupportedFeature` naming the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from phonjax import units
from phonjax.models.nequip.nn import irreps as I


class UnsupportedFeature(ValueError):
    """An architecture feature phonjax does not implement (message names it)."""


#: allowed values of the variant fields (first = nequip's default)
VARIANTS = {"embedding": ("learned", "one_hot_linear"), "self_connection": ("fctp", "linear"),
            "radial_mlp": ("nequip", "e3nn_fcnet"), "cutoff": ("polynomial", "xplor"),
            "message_norm": ("sqrt", "linear"), "parity_labels": ("nequip", "all_even"),
            "sh_normalize": (True, False)}

#: linears that can take the fidelity one-hot as extra scalar inputs (``ModelConfig.modal_linears``)
MODAL_LINEARS = ("linear_1", "linear_2", "readout")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a NequIP model. Lengths Å, energies eV.

    type_names: model types (chemical symbols; index = type index).
    r_max: cutoff radius (Å).  dtype: "float32" or "float64" network dtype (lengths, SH, Bessel inputs,
      scale/shift and ZBL are float64 in both, as in torch nequip).
    irreps_edge_sh: spherical-harmonic irreps of edges, e.g. "1x0e+1x1o+1x2e+1x3o" (parity of l:
      (−1)^l). feature_irreps_hidden: one irreps string per ConvNet layer (last one scalars only).
    type_embed_num_features: width F of the learned type embedding (node attrs = initial features).
    num_bessels, bessel_trainable: Bessel basis size; polynomial_cutoff_p: envelope exponent p.
    edge_factor: factor applied to Bessel×cutoff (None → nequip's 2π/r_max²).
    radial_mlp_depth / radial_mlp_width: per layer hidden depth and width of the radial MLP.
    avg_num_neighbors: global float or per-type tuple (messages × 1/√avg before the tensor product).
    convnet_sc: self-connection in layers ≥ 1 (nequip never has one in layer 0 unless sc_first_layer).
    convnet_resnet: residual update where irreps allow (layers ≥ 1).
    nonlinearity_scalars / nonlinearity_gates: activation names for even / odd scalars and gates.
    readout_hidden: hidden widths of the per-atom energy readout MLP (bias-free);
      readout_nonlinearity: "silu" / "tanh" / None.
    per_type_energy_scales / _shifts: initial values (the trained values live in the params);
      *_trainable are informative (for training).
    zbl: add nequip's ZBL pair term; zbl_species: chemical symbol of every type (default type_names);
      zbl_polynomial_cutoff_p: its own cutoff exponent (nequip ≥ 0.17: 6; ≤ 0.16: the Bessel p).

    Variant fields (nequip defaults; the other values reproduce SevenNet, see phonjax/convert/sevennet.py):
    embedding "learned" (nequip: table (T, F), node attrs = features) | "one_hot_linear" (SevenNet: one-hot
      (T) → o3.Linear(Tx0e → Fx0e), node attrs = the one-hot vector);
    self_connection "fctp" (nequip: FCTP(h, attrs)) | "linear" (SevenNet: o3.Linear(h → gate input));
    radial_mlp "nequip" (ScalarMLPFunction: SiLU, gains 1, √2, …) | "e3nn_fcnet" (e3nn FullyConnectedNet:
      x @ W/√fan_in, hidden layers c·silu with torch's normalize2mom constant c);
    cutoff "polynomial" (envelope with polynomial_cutoff_p) | "xplor" (switch 1 → 0 between cutoff_on and
      r_max: (r_c²−r²)²(r_c²+2r²−3r_on²)/(r_c²−r_on²)³);
    message_norm "sqrt" (× 1/√avg_num_neighbors) | "linear" (× 1/avg_num_neighbors);
    parity_labels "nequip" (SH irreps 0e+1o+2e+…) | "all_even" (SevenNet's is_parity=False: SH irreps
      0e+1e+2e+…, same values, every irrep labelled even — admits paths such as 1e⊗1e→1e).
    cutoff_on: XPLOR switching start r_on (Å), required for cutoff="xplor".
    sh_normalize: True (nequip, SevenNet ≥ 2024-07: spherical harmonics of the unit edge vector) | False
      (SevenNet-0 of 22 May 2024: of the edge vector itself, i.e. |r|^l·Y_l(r̂), component normalisation).
    modal_onehot: SevenNet multi-fidelity (SevenNet-MF-0): the fidelity one-hot of the chosen modality, e.g.
      (0.0, 1.0) for MF-0's "PBE", appended as M extra scalar (Mx0e) inputs to the linears named in
      modal_linears ("linear_1": self_interaction_1, "linear_2": self_interaction_2, "readout": the readout's
      first layer), as sevenn's IrrepsLinear does; () (the default): a single-fidelity model.
    """

    type_names: tuple[str, ...]
    r_max: float
    feature_irreps_hidden: tuple[str, ...]
    radial_mlp_depth: tuple[int, ...]
    radial_mlp_width: tuple[int, ...]
    avg_num_neighbors: float | tuple[float, ...]
    dtype: str = "float64"
    irreps_edge_sh: str = "1x0e+1x1o+1x2e+1x3o"
    type_embed_num_features: int = 32
    num_bessels: int = 8
    bessel_trainable: bool = False
    polynomial_cutoff_p: float = 6.0
    edge_factor: float | None = None
    convnet_sc: bool = True
    sc_first_layer: bool = False
    convnet_resnet: bool = False
    nonlinearity_scalars: tuple[str, str] = ("silu", "tanh")
    nonlinearity_gates: tuple[str, str] = ("silu", "tanh")
    readout_hidden: tuple[int, ...] = ()
    readout_nonlinearity: str | None = "silu"
    per_type_energy_scales: tuple[float, ...] | None = None
    per_type_energy_shifts: tuple[float, ...] | None = None
    per_type_energy_scales_trainable: bool = False
    per_type_energy_shifts_trainable: bool = False
    zbl: bool = False
    zbl_species: tuple[str, ...] | None = None
    zbl_polynomial_cutoff_p: float = 6.0
    zbl_coulomb: float = units.COULOMB_EV_A
    # -- variants (see docstring) --
    embedding: str = "learned"
    self_connection: str = "fctp"
    radial_mlp: str = "nequip"
    cutoff: str = "polynomial"
    message_norm: str = "sqrt"
    parity_labels: str = "nequip"
    cutoff_on: float | None = None
    sh_normalize: bool = True
    modal_onehot: tuple[float, ...] = ()
    modal_linears: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "type_names", tuple(self.type_names))
        object.__setattr__(self, "feature_irreps_hidden", tuple(self.feature_irreps_hidden))
        object.__setattr__(self, "radial_mlp_depth", tuple(int(x) for x in self.radial_mlp_depth))
        object.__setattr__(self, "radial_mlp_width", tuple(int(x) for x in self.radial_mlp_width))
        object.__setattr__(self, "readout_hidden", tuple(int(x) for x in self.readout_hidden))
        object.__setattr__(self, "modal_onehot", tuple(float(x) for x in self.modal_onehot))
        object.__setattr__(self, "modal_linears", tuple(self.modal_linears))
        for name in ("per_type_energy_scales", "per_type_energy_shifts", "zbl_species"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.avg_num_neighbors, (list, tuple)):
            object.__setattr__(self, "avg_num_neighbors", tuple(float(x) for x in self.avg_num_neighbors))
        object.__setattr__(self, "nonlinearity_scalars", tuple(self.nonlinearity_scalars))
        object.__setattr__(self, "nonlinearity_gates", tuple(self.nonlinearity_gates))
        self.validate()

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        for fld, ok in VARIANTS.items():
            if getattr(self, fld) not in ok:
                raise UnsupportedFeature(f"{fld}={getattr(self, fld)!r} is not implemented (one of {list(ok)})")
        if self.cutoff == "xplor":
            if self.cutoff_on is None or not 0.0 < float(self.cutoff_on) < float(self.r_max):
                raise ValueError(f"cutoff='xplor' needs 0 < cutoff_on < r_max, got cutoff_on={self.cutoff_on}")
        elif self.cutoff_on is not None:
            raise ValueError("cutoff_on is only used with cutoff='xplor'")
        sh = I.parse_irreps(self.irreps_edge_sh)
        want = 1 if self.parity_labels == "all_even" else None
        if [l for _, l, _ in sh] != list(range(len(sh))) or any(
                m != 1 or p != (want if want is not None else (-1) ** l) for m, l, p in sh):
            lab = "0e+1e+2e+…" if want else "0e+1o+2e+…"
            raise ValueError(f"irreps_edge_sh must be {lab} for parity_labels={self.parity_labels!r}, "
                             f"got {self.irreps_edge_sh}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not self.type_names:
            raise ValueError("type_names is empty")
        if not self.r_max > 0:
            raise ValueError(f"r_max must be positive, got {self.r_max}")
        n = len(self.feature_irreps_hidden)
        if n == 0 or len(self.radial_mlp_depth) != n or len(self.radial_mlp_width) != n:
            raise ValueError("feature_irreps_hidden, radial_mlp_depth, radial_mlp_width need one entry per layer")
        last = I.parse_irreps(self.feature_irreps_hidden[-1])
        if any(l != 0 for _, l, _ in last):
            raise ValueError(f"last layer must output scalars only, got {self.feature_irreps_hidden[-1]}")
        for s in (self.irreps_edge_sh, *self.feature_irreps_hidden):
            I.parse_irreps(s)
        for a in (*self.nonlinearity_scalars, *self.nonlinearity_gates):
            I.check_activation(a)
        if self.readout_nonlinearity not in ("silu", "tanh", None):
            raise UnsupportedFeature(f"readout_nonlinearity={self.readout_nonlinearity!r}")
        nt = len(self.type_names)
        for name in ("per_type_energy_scales", "per_type_energy_shifts", "zbl_species"):
            v = getattr(self, name)
            if v is not None and len(v) != nt:
                raise ValueError(f"{name} has {len(v)} entries for {nt} types")
        if isinstance(self.avg_num_neighbors, tuple) and len(self.avg_num_neighbors) not in (1, nt):
            raise ValueError(f"avg_num_neighbors has {len(self.avg_num_neighbors)} entries for {nt} types")
        self._validate_modal()

    def _validate_modal(self) -> None:
        oh, lin = self.modal_onehot, self.modal_linears
        if bool(oh) != bool(lin):
            raise ValueError("modal_onehot and modal_linears go together (both empty for a single-fidelity model)")
        if oh and (len(oh) < 2 or sorted(oh) != [0.0] * (len(oh) - 1) + [1.0]):
            raise ValueError(f"modal_onehot must be a one-hot vector of ≥ 2 modalities, got {oh}")
        bad = [x for x in lin if x not in MODAL_LINEARS]
        if bad or len(set(lin)) != len(lin):
            raise ValueError(f"modal_linears {lin}: each at most once, from {list(MODAL_LINEARS)}")

    # -- derived -------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.feature_irreps_hidden)

    @property
    def factor(self) -> float:
        return (2 * math.pi) / (self.r_max * self.r_max) if self.edge_factor is None else float(self.edge_factor)

    @property
    def sh_irreps(self):
        return I.parse_irreps(self.irreps_edge_sh)

    def avg_num_neighbors_norm(self) -> tuple[float, ...]:
        """Message factor per type (length 1 for a global value): 1/√avg ("sqrt") or 1/avg ("linear")."""
        a = self.avg_num_neighbors
        a = (a,) if not isinstance(a, tuple) else a
        if self.message_norm == "linear":
            return tuple(1.0 / float(x) for x in a)
        return tuple(1.0 / math.sqrt(float(x)) for x in a)

    @property
    def num_node_attrs(self) -> int:
        """Width of the node attributes (scalars fed to an FCTP self-connection)."""
        return len(self.type_names) if self.embedding == "one_hot_linear" else self.type_embed_num_features

    def layer_irreps(self):
        """Per layer: dict(irreps_in, conv_out (= gate input), scalars, gates, gated, out) with torch semantics."""
        sh = self.sh_irreps
        prev = ((self.type_embed_num_features, 0, 1),)
        acts_s = {1: self.nonlinearity_scalars[0], -1: self.nonlinearity_scalars[1]}
        acts_g = {1: self.nonlinearity_gates[0], -1: self.nonlinearity_gates[1]}
        out = []
        for k, s in enumerate(self.feature_irreps_hidden):
            hidden = I.parse_irreps(s)
            scalars = tuple(t for t in hidden if t[1] == 0 and I.tp_path_exists(prev, sh, t[1], t[2]))
            gated = tuple(t for t in hidden if t[1] > 0 and I.tp_path_exists(prev, sh, t[1], t[2]))
            gp = 1 if I.tp_path_exists(prev, sh, 0, 1) else -1
            gates = tuple((m, 0, gp) for m, _, _ in gated)
            (sc, _), (ga, _), (gd, _), conv_out = I.gate_layout(scalars, gates, gated)
            layer_out = sc + gd
            resnet = self.convnet_resnet and k > 0 and I.simplify(scalars + gated) == prev
            out.append(dict(irreps_in=prev, conv_out=conv_out, scalars=scalars, gates=gates, gated=gated,
                            out=layer_out, acts_scalars=acts_s, acts_gates=acts_g,
                            use_sc=self.convnet_sc and (k > 0 or self.sc_first_layer), resnet=resnet))
            prev = layer_out
        return out

    def modal_irreps(self, linear: str) -> tuple:
        """The extra scalar inputs ((M, 0, 1),) that ``linear`` (one of :data:`MODAL_LINEARS`) takes, or ()."""
        return ((len(self.modal_onehot), 0, 1),) if linear in self.modal_linears else ()

    def replace(self, **kw) -> "ModelConfig":
        return replace(self, **kw)
