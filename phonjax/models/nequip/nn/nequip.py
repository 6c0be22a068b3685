"""NequIP in flax.linen, numerically identical to torch nequip 0.19.

Module (and parameter) names follow torch nequip's ``SequentialGraphNetwork``::

    type_embed/embedding (T, F)                      learned type embedding (node attrs = features)
    bessel_encode/bessel_weights (1, n_bessel)       float64, trainable or fixed
    layer{i}_convnet/conv/linear_1/weight            o3.Linear flat weight
    layer{i}_convnet/conv/edge_mlp/weight_{k}        radial MLP layers (fan_in, fan_out)
    layer{i}_convnet/conv/linear_2/weight            o3.Linear flat weight
    layer{i}_convnet/conv/sc/weight                  self-connection FCTP flat weight (layers ≥ 1)
    per_atom_energy_readout/weight_{k}               bias-free readout MLP
    per_type_energy_scale_shift/{scales, shifts} (T,)  float64

Data flow per layer (nequip ``ConvNetLayer``): sc = FCTP(h, attrs); h' = linear_1(h)·norm;
m_i = Σ_{j→i} TP_uvu(h'_j, Y(r̂_ij); MLP(Bessel·u)); h = Gate(linear_2(m) + sc) (+ h if resnet).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ase.data import atomic_numbers as _ATOMIC_NUMBERS

from phonjax.models.nequip.nn import irreps as I
from phonjax.models.nequip.nn.config import ModelConfig
from phonjax.models.nequip.nn.radial import bessel_basis, fcnet_apply, mlp_apply, polynomial_cutoff, xplor_cutoff
from phonjax.models.nequip.nn.zbl import zbl_edge_energy


def _normal(key, shape, dtype):
    return jax.random.normal(key, shape, dtype)


def _uniform3(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, -math.sqrt(3), math.sqrt(3))


class _MLPWeights(nn.Module):
    """The weight matrices ``weight_{k}`` (fan_in, fan_out) of a bias-free MLP (applied by :func:`_mlp`)."""

    dims: tuple
    dtype: str

    @nn.compact
    def __call__(self):
        return [self.param(f"weight_{k}", _uniform3, (a, b), jnp.dtype(self.dtype))
                for k, (a, b) in enumerate(zip(self.dims[:-1], self.dims[1:]))]


def _mlp(kind: str, ws, x, nonlinearity):
    """kind "nequip" (ScalarMLPFunction) | "e3nn_fcnet" (FullyConnectedNet, SevenNet)."""
    if kind == "e3nn_fcnet":
        return fcnet_apply(ws, x, nonlinearity)
    return mlp_apply(ws, x, nonlinearity)


class _Weight(nn.Module):
    numel: int
    dtype: str

    @nn.compact
    def __call__(self):
        return self.param("weight", _normal, (self.numel,), jnp.dtype(self.dtype))


def _with_modal(x, cfg: ModelConfig, linear: str):
    """x (..., d) with the fidelity one-hot appended as scalars where ``linear`` takes it (SevenNet-MF), else x."""
    if linear not in cfg.modal_linears:
        return x
    oh = jnp.broadcast_to(jnp.asarray(cfg.modal_onehot, x.dtype), (*x.shape[:-1], len(cfg.modal_onehot)))
    return jnp.concatenate([x, oh], axis=-1)


def _messages(x, sh, edge_emb, senders, edge_mask, w_mlp, kind, irreps):
    """TP_uvu(x_j, Y(r̂_ij); MLP(edge_emb_ij)) per edge: (E, dim(mid)); padded edges give zero messages."""
    irr_in, sh_irr, conv_out = irreps
    w_edge = jnp.where(edge_mask[:, None], _mlp(kind, w_mlp, edge_emb, "silu"), 0.0)
    return I.uvu_apply(x[senders], sh, w_edge, irr_in, sh_irr, conv_out)


def _aggregate(x, sh, edge_emb, senders, receivers, edge_mask, w_mlp, kind, irreps, n_nodes):
    """Σ_{j→i} TP_uvu(x_j, Y(r̂_ij); MLP(edge_emb_ij)) onto the receivers: (n_nodes, dim(mid))."""
    msg = _messages(x, sh, edge_emb, senders, edge_mask, w_mlp, kind, irreps)
    return jax.ops.segment_sum(msg, receivers, num_segments=n_nodes)


def _aggregate_chunked(chunk, dim_mid, x, sh, edge_emb, senders, receivers, edge_mask, w_mlp, kind, irreps,
                       n_nodes):
    """:func:`_aggregate` over edge chunks of ``chunk`` edges in a ``lax.scan``: each chunk's messages are
    rematerialised (``jax.checkpoint``) and added onto the receivers of the carried sum in place, so per-edge
    intermediates (radial weights, tensor-product paths) exist for one chunk at a time in the forward, backward
    and forward-over-backward passes — memory O(nodes·features + chunk·features) instead of O(edges·features),
    and work per step O(chunk·features), not O(nodes·features). Same result up to the order of the float sums."""
    E = senders.shape[0]
    n = -(-E // chunk)
    pad = n * chunk - E

    def split(a, fill=0):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), constant_values=fill)
        return a.reshape((n, chunk) + a.shape[1:])

    msgs = jax.checkpoint(lambda c: _messages(x, c[0], c[1], c[2], c[4], w_mlp, kind, irreps), prevent_cse=False)

    def step(acc, c):
        return acc.at[c[3]].add(msgs(c)), None

    xs = (split(sh), split(edge_emb), split(senders), split(receivers), split(edge_mask, False))
    acc, _ = jax.lax.scan(step, jnp.zeros((n_nodes, dim_mid), x.dtype), xs)
    return acc


def _active_correction(x, active, w_mlp, kind, irreps, n_nodes):
    """Messages of the active edges at their own geometry minus the same at the bound geometry, onto the
    receivers: zero in value whenever the two geometries agree, while derivatives with respect to the active
    geometry flow only through these few edges (see :class:`NequIP`'s ``active``). ``active``: (receivers (A,),
    and over 2A edges — moved geometry first, then bound — sh, edge_emb, senders, mask), one tensor-product call."""
    rcv, sh2, emb2, snd2, mask2 = active
    m = _messages(x, sh2, emb2, snd2, mask2, w_mlp, kind, irreps)
    a = rcv.shape[0]
    return jax.ops.segment_sum(m[:a] - m[a:], rcv, num_segments=n_nodes)


class InteractionBlock(nn.Module):
    """nequip ``InteractionBlock`` (convolution) of one layer. ``edge_chunk`` > 0: messages in rematerialised
    chunks of that many edges (:func:`_aggregate_chunked`; an execution choice, parameters unchanged)."""

    config: ModelConfig
    layer: int
    edge_chunk: int = 0

    @nn.compact
    def __call__(self, h, attrs, species, sh, edge_emb, senders, receivers, edge_mask, active=None):
        cfg = self.config
        L = cfg.layer_irreps()[self.layer]
        irr_in, conv_out, sh_irr = L["irreps_in"], L["conv_out"], cfg.sh_irreps
        dt = cfg.dtype
        n_nodes = h.shape[0]
        sc = None
        if L["use_sc"] and cfg.self_connection == "linear":  # SevenNet: o3.Linear(h → gate input)
            w_sc = _Weight(I.linear_numel(irr_in, conv_out), dt, name="sc")()
            sc = I.linear_apply(w_sc, h, irr_in, conv_out)
        elif L["use_sc"]:
            attr_irr = ((cfg.num_node_attrs, 0, 1),)
            w_sc = _Weight(I.fctp_numel(irr_in, attr_irr, conv_out), dt, name="sc")()
            sc = I.fctp_scalar_apply(w_sc, h, attrs, irr_in, attr_irr, conv_out)
        irr_1 = irr_in + cfg.modal_irreps("linear_1")
        w1 = _Weight(I.linear_numel(irr_1, irr_in), dt, name="linear_1")()
        x = I.linear_apply(w1, _with_modal(h, cfg, "linear_1"), irr_1, irr_in)
        norm = jnp.asarray(cfg.avg_num_neighbors_norm(), x.dtype)
        x = x * (norm[0] if norm.shape[0] == 1 else norm[species][:, None])
        numel = I.uvu_numel(irr_in, sh_irr, conv_out)
        dims = (cfg.num_bessels,) + (cfg.radial_mlp_width[self.layer],) * cfg.radial_mlp_depth[self.layer] + (numel,)
        w_mlp = _MLPWeights(dims, dt, name="edge_mlp")()
        mid = I.uvu_mid(irr_in, sh_irr, conv_out)
        args = (x, sh, edge_emb, senders, receivers, edge_mask, w_mlp, cfg.radial_mlp, (irr_in, sh_irr, conv_out),
                n_nodes)
        x_in = x
        if 0 < self.edge_chunk < senders.shape[0]:
            x = _aggregate_chunked(self.edge_chunk, I.dim(mid), *args)
        else:
            x = _aggregate(*args)
        if active is not None:
            x = x + _active_correction(x_in, active, w_mlp, cfg.radial_mlp, (irr_in, sh_irr, conv_out), n_nodes)
        mid_2 = mid + cfg.modal_irreps("linear_2")
        w2 = _Weight(I.linear_numel(mid_2, conv_out), dt, name="linear_2")()
        x = I.linear_apply(w2, _with_modal(x, cfg, "linear_2"), mid_2, conv_out)
        if sc is not None:
            x = x + sc
        return x


class ConvNetLayer(nn.Module):
    config: ModelConfig
    layer: int
    edge_chunk: int = 0

    @nn.compact
    def __call__(self, h, attrs, species, sh, edge_emb, senders, receivers, edge_mask, active=None):
        L = self.config.layer_irreps()[self.layer]
        x = InteractionBlock(self.config, self.layer, self.edge_chunk, name="conv")(
            h, attrs, species, sh, edge_emb, senders, receivers, edge_mask, active)
        x = I.gate_apply(x, L["scalars"], L["gates"], L["gated"], L["acts_scalars"], L["acts_gates"])
        if L["resnet"]:
            x = h + x
        return x


class NequIP(nn.Module):
    """Per-atom energies (N,) float64 eV of a padded graph.

    Inputs: vec (E, 3) and vec_safe (E, 3) float64 edge vectors (graph.edge_vectors), species (N,) type
    indices, senders/receivers (E,), edge_mask (E,) bool. Padded nodes must be masked by the caller.
    edge_chunk > 0 computes messages in rematerialised chunks of that many edges (memory-lean second
    derivatives of large supercells; same parameters, same energies up to float summation order).
    active: None, or (idx (A,) int, mask (A,) bool, vec_a (A, 3)) — a second geometry for the edges ``idx``:
    each such edge's messages (and ZBL term) are evaluated at ``vec_a`` instead of ``vec_safe[idx]``, written as
    the bound-geometry value plus a difference over the A edges only. With vec_a = vec_safe[idx] + δ the energy
    equals the one at the moved edges, and derivatives in δ touch A edges instead of every edge (the
    Hessian-vector product of one displaced atom, :mod:`phonjax.hvp` mode "edge").
    """

    config: ModelConfig
    edge_chunk: int = 0

    @nn.compact
    def __call__(self, vec_safe, species, senders, receivers, edge_mask, active=None):
        cfg = self.config
        mdt = jnp.dtype(cfg.dtype)
        T = len(cfg.type_names)
        # -- type embedding (node attrs and initial features)
        if cfg.embedding == "one_hot_linear":  # SevenNet: one-hot → o3.Linear(Tx0e → Fx0e)
            w = _Weight(T * cfg.type_embed_num_features, cfg.dtype, name="type_embed")()
            attrs = jax.nn.one_hot(species, T, dtype=mdt)
            h0 = w.reshape(T, cfg.type_embed_num_features)[species] * jnp.asarray(1.0 / math.sqrt(T), mdt)
        else:
            emb = _Embed(T, cfg.type_embed_num_features, cfg.dtype, name="type_embed")()
            attrs = h0 = emb[species]
        # -- edges: SH and radial basis in float64, then model dtype
        sh_irr = cfg.sh_irreps
        ls = [l for _, l, _ in sh_irr]
        if ls != list(range(len(ls))) or any(p != ((-1) ** l if cfg.parity_labels == "nequip" else 1)
                                             for _, l, p in sh_irr):
            raise ValueError(f"edge SH irreps {cfg.irreps_edge_sh} do not fit parity_labels={cfg.parity_labels!r}")
        # values are those of the natural-parity SH (all_even only relabels them)
        sh_str = "+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in ls)
        bw = _BesselWeights(cfg.num_bessels, name="bessel_encode")()
        sh, edge_emb, r, xn = _edge_geometry(cfg, sh_str, bw, vec_safe, mdt)
        act = None
        if active is not None:
            idx, amask, vec_a = active
            sh_a, emb_a, r_a, xn_a = _edge_geometry(cfg, sh_str, bw, vec_a, mdt)
            # both geometries of the active edges side by side, gathered once for every layer
            act = (receivers[idx], jnp.concatenate([sh_a, sh[idx]]), jnp.concatenate([emb_a, edge_emb[idx]]),
                   jnp.concatenate([senders[idx]] * 2), jnp.concatenate([amask] * 2))
        # -- convolutions
        h = h0
        for k in range(cfg.num_layers):
            h = ConvNetLayer(cfg, k, self.edge_chunk, name=f"layer{k}_convnet")(
                h, attrs, species, sh, edge_emb, senders, receivers, edge_mask, act)
        # -- readout and per-type scale/shift (float64)
        n_in = I.num_irreps(I.parse_irreps(cfg.feature_irreps_hidden[-1]))
        dims = (n_in + I.dim(cfg.modal_irreps("readout")),) + tuple(cfg.readout_hidden) + (1,)
        w_out = _MLPWeights(dims, cfg.dtype, name="per_atom_energy_readout")()
        e = _mlp("nequip", w_out, _with_modal(h, cfg, "readout"), cfg.readout_nonlinearity)[:, 0]
        scales, shifts = _ScaleShift(cfg, name="per_type_energy_scale_shift")()
        e = shifts[species] + scales[species] * e.astype(jnp.float64)
        # -- ZBL
        if cfg.zbl:
            species_names = cfg.zbl_species or cfg.type_names
            Z = jnp.asarray([_ATOMIC_NUMBERS[s] for s in species_names], jnp.float64)

            def zbl(snd, rcv, rr, xx, m):
                ez = zbl_edge_energy(Z[species[rcv]], Z[species[snd]], rr, xx[:, 0], cfg.zbl_polynomial_cutoff_p,
                                     cfg.zbl_coulomb, mdt)
                return jax.ops.segment_sum(jnp.where(m, ez, 0.0), rcv, num_segments=e.shape[0])

            e = e + zbl(senders, receivers, r, xn, edge_mask)
            if active is not None:
                e = e + (zbl(senders[idx], receivers[idx], r_a, xn_a, amask)
                         - zbl(senders[idx], receivers[idx], r[idx], xn[idx], amask))
        return e


def _edge_geometry(cfg: ModelConfig, sh_str: str, bw, vec, mdt):
    """(sh (E, dim), edge_emb (E, num_bessels) in the model dtype, r (E,) and r/r_max (E, 1) float64) of edge
    vectors ``vec`` (E, 3) float64: spherical harmonics and cut-off radial basis, computed in float64."""
    from e3nn_jax import spherical_harmonics

    sh = spherical_harmonics(sh_str, vec, normalize=cfg.sh_normalize, normalization="component").array.astype(mdt)
    r = jnp.sqrt(jnp.sum(vec * vec, axis=-1))
    xn = (r * (1.0 / cfg.r_max))[:, None]
    bessel = bessel_basis(xn, bw).astype(mdt)
    if cfg.cutoff == "xplor":
        cut = xplor_cutoff(r, cfg.cutoff_on, cfg.r_max)[:, None].astype(mdt)
    else:
        cut = polynomial_cutoff(xn, cfg.polynomial_cutoff_p).astype(mdt)
    return sh, (bessel * cut) * jnp.asarray(cfg.factor, mdt), r, xn


class _Embed(nn.Module):
    num_types: int
    num_features: int
    dtype: str

    @nn.compact
    def __call__(self):
        return self.param("embedding", _normal, (self.num_types, self.num_features), jnp.dtype(self.dtype))


class _BesselWeights(nn.Module):
    num_bessels: int

    @nn.compact
    def __call__(self):
        return self.param("bessel_weights", lambda k, s: jnp.linspace(1.0, s[1], s[1], dtype=jnp.float64)[None, :],
                          (1, self.num_bessels))


class _ScaleShift(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self):
        cfg = self.config
        T = len(cfg.type_names)
        sc0 = np.ones(T) if cfg.per_type_energy_scales is None else np.asarray(cfg.per_type_energy_scales, float)
        sh0 = np.zeros(T) if cfg.per_type_energy_shifts is None else np.asarray(cfg.per_type_energy_shifts, float)
        scales = self.param("scales", lambda k: jnp.asarray(sc0, jnp.float64))
        shifts = self.param("shifts", lambda k: jnp.asarray(sh0, jnp.float64))
        return scales, shifts


def init_params(config: ModelConfig, seed: int = 0):
    """Fresh parameters (torch-like initialisation) for ``config``."""
    model = NequIP(config)
    E = 2
    vec = jnp.asarray([[1.0, 0.2, 0.1], [-1.0, -0.2, -0.1]])
    sp = jnp.zeros(2, jnp.int32)
    idx = jnp.asarray([0, 1], jnp.int32)
    return jax.jit(model.init)(jax.random.PRNGKey(seed), vec, sp, idx, idx[::-1], jnp.ones(E, bool))["params"]
