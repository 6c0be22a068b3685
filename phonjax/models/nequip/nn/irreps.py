"""Irreps bookkeeping with torch-e3nn semantics, and the equivariant linear maps of NequIP.

Feature arrays are plain ``(..., dim)`` arrays laid out as in e3nn (torch and jax alike): blocks
``mul × (2l+1)``, mul-major inside a block. Irreps are tuples of ``(mul, l, p)`` with p = ±1.

Sorting follows **torch e3nn** (by (l, p) with p = −1 before p = +1, i.e. 0o, 0e, 1o, 1e, …; stable),
which differs from e3nn-jax's order for parity-on models. Weight layouts follow torch e3nn so that
converted weights are used unchanged:

* ``o3.Linear``: flat weight = blocks (mul_in, mul_out) for every (i_in, i_out) pair of equal irreps,
  i_in outer; each output normalised by 1/√(Σ mul_in feeding it).
* ``FullyConnectedTensorProduct(x, scalars a)`` (nequip's self-connection): blocks (mul1, mul2, mul_out)
  per instruction (i1, i2, i_out), normalised by 1/√(Σ mul1·mul2 feeding i_out).
"""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST

Irreps = tuple  # tuple[tuple[int, int, int], ...]  (mul, l, p)


class IrrepsError(ValueError):
    """An irreps string or combination nequip cannot build."""


def parse_irreps(s) -> Irreps:
    """'128x0e+64x1o' (or a sequence of (mul, l, p)) → ((128, 0, 1), (64, 1, -1))."""
    if isinstance(s, (tuple, list)):
        return tuple((int(m), int(l), int(p)) for m, l, p in s)
    out = []
    s = str(s).replace(" ", "")
    if not s:
        return ()
    for term in s.split("+"):
        m = re.fullmatch(r"(?:(\d+)x)?(\d+)([eo])", term)
        if m is None:
            raise IrrepsError(f"cannot parse irreps term {term!r} in {s!r}")
        mul = int(m.group(1)) if m.group(1) is not None else 1
        out.append((mul, int(m.group(2)), 1 if m.group(3) == "e" else -1))
    return tuple(out)


def irreps_str(irreps: Irreps) -> str:
    return "+".join(f"{m}x{l}{'e' if p == 1 else 'o'}" for m, l, p in irreps)


def dim(irreps: Irreps) -> int:
    return sum(m * (2 * l + 1) for m, l, _ in irreps)


def num_irreps(irreps: Irreps) -> int:
    return sum(m for m, _, _ in irreps)


def offsets(irreps: Irreps) -> list[int]:
    o, out = 0, []
    for m, l, _ in irreps:
        out.append(o)
        o += m * (2 * l + 1)
    return out


def split_blocks(x, sizes):
    """x (..., Σ sizes) → [x[..., a:a+size] ...] as one ``jnp.split``, whose transpose is a single concatenate
    (per-block slicing would transpose into one padded full-width add per block in every backward pass)."""
    cuts = np.cumsum(sizes)[:-1].tolist()
    return jnp.split(x, cuts, axis=-1) if cuts else [x]


def irreps_blocks(x, irreps: Irreps):
    """x (..., dim(irreps)) → [(..., mul, 2l+1) per block] (see :func:`split_blocks`)."""
    batch = x.shape[:-1]
    return [b.reshape(*batch, m, 2 * l + 1)
            for b, (m, l, _) in zip(split_blocks(x, [m * (2 * l + 1) for m, l, _ in irreps]), irreps)]


def sort_irreps(irreps: Irreps) -> tuple[Irreps, tuple[int, ...]]:
    """Torch e3nn ``Irreps.sort``: returns (sorted irreps, p) with p[i_old] = i_new."""
    order = sorted(range(len(irreps)), key=lambda i: ((irreps[i][1], irreps[i][2]), i, irreps[i][0]))
    p = [0] * len(irreps)
    for new, old in enumerate(order):
        p[old] = new
    return tuple(irreps[i] for i in order), tuple(p)


def simplify(irreps: Irreps) -> Irreps:
    """Merge neighbouring blocks of equal irreps (torch e3nn ``Irreps.simplify``); drops mul 0."""
    out: list[list[int]] = []
    for m, l, p in irreps:
        if m == 0:
            continue
        if out and out[-1][1] == l and out[-1][2] == p:
            out[-1][0] += m
        else:
            out.append([m, l, p])
    return tuple(tuple(x) for x in out)


def ir_product(l1: int, p1: int, l2: int, p2: int):
    """Irreps (l, p) in l1 ⊗ l2, in e3nn order (l = |l1−l2| … l1+l2)."""
    return [(l, p1 * p2) for l in range(abs(l1 - l2), l1 + l2 + 1)]


def tp_path_exists(irreps_in1: Irreps, irreps_in2: Irreps, l_out: int, p_out: int) -> bool:
    for _, l1, p1 in irreps_in1:
        for _, l2, p2 in irreps_in2:
            if (l_out, p_out) in ir_product(l1, p1, l2, p2):
                return True
    return False


def contains_ir(irreps: Irreps, l: int, p: int) -> bool:
    return any(l2 == l and p2 == p for _, l2, p2 in irreps)


# -- o3.Linear ------------------------------------------------------------------------------
def linear_instructions(irreps_in: Irreps, irreps_out: Irreps):
    return [(i, o) for i, (_, li, pi) in enumerate(irreps_in) for o, (_, lo, po) in enumerate(irreps_out)
            if li == lo and pi == po]


def linear_numel(irreps_in: Irreps, irreps_out: Irreps) -> int:
    return sum(irreps_in[i][0] * irreps_out[o][0] for i, o in linear_instructions(irreps_in, irreps_out))


def linear_apply(weight, x, irreps_in: Irreps, irreps_out: Irreps):
    """Torch ``o3.Linear`` (no bias) with its flat weight. x (..., dim_in) → (..., dim_out)."""
    ins = linear_instructions(irreps_in, irreps_out)
    fan = [sum(irreps_in[i][0] for i, o2 in ins if o2 == o) for o in range(len(irreps_out))]
    blocks = [None] * len(irreps_out)
    batch = x.shape[:-1]
    xs = irreps_blocks(x, irreps_in)
    Ws = split_blocks(weight, [irreps_in[i][0] * irreps_out[o][0] for i, o in ins])
    for (i, o), Wf in zip(ins, Ws):
        mi = irreps_in[i][0]
        mo = irreps_out[o][0]
        W = Wf.reshape(mi, mo)
        xi = xs[i]
        y = jnp.einsum("...um,uw->...wm", xi, W, precision=HIGHEST) / math.sqrt(fan[o])
        blocks[o] = y if blocks[o] is None else blocks[o] + y
    out = []
    for o, (mo, l, _) in enumerate(irreps_out):
        b = blocks[o]
        if b is None:
            b = jnp.zeros((*batch, mo, 2 * l + 1), x.dtype)
        out.append(b.reshape(*batch, mo * (2 * l + 1)))
    return jnp.concatenate(out, axis=-1) if out else jnp.zeros((*batch, 0), x.dtype)


# -- self-connection: FullyConnectedTensorProduct(features, scalar attrs) --------------------
def fctp_instructions(irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps):
    ins = []
    for i1, (_, l1, p1) in enumerate(irreps_in1):
        for i2, (_, l2, p2) in enumerate(irreps_in2):
            for io, (_, lo, po) in enumerate(irreps_out):
                if (lo, po) in ir_product(l1, p1, l2, p2):
                    ins.append((i1, i2, io))
    return ins


def fctp_numel(irreps_in1, irreps_in2, irreps_out) -> int:
    return sum(irreps_in1[a][0] * irreps_in2[b][0] * irreps_out[c][0]
               for a, b, c in fctp_instructions(irreps_in1, irreps_in2, irreps_out))


def fctp_scalar_apply(weight, x, attrs, irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps):
    """Torch ``FullyConnectedTensorProduct(irreps_in1, irreps_in2, irreps_out)`` for scalar-only
    ``irreps_in2`` (all ``0e``): out_w = Σ W[u, v, w] x_u a_v / √(Σ mul1·mul2).
    x (N, dim1), attrs (N, dim2) → (N, dim_out)."""
    if any(l != 0 or p != 1 for _, l, p in irreps_in2):
        raise IrrepsError("self-connection attributes must be even scalars (0e)")
    ins = fctp_instructions(irreps_in1, irreps_in2, irreps_out)
    fan = [sum(irreps_in1[a][0] * irreps_in2[b][0] for a, b, c2 in ins if c2 == c) for c in range(len(irreps_out))]
    blocks = [None] * len(irreps_out)
    N = x.shape[0]
    xs = irreps_blocks(x, irreps_in1)
    avs = split_blocks(attrs, [m for m, _, _ in irreps_in2])
    Ws = split_blocks(weight, [irreps_in1[a][0] * irreps_in2[b][0] * irreps_out[c][0] for a, b, c in ins])
    for (a, b, c), Wf in zip(ins, Ws):
        m1 = irreps_in1[a][0]
        m2 = irreps_in2[b][0]
        mo = irreps_out[c][0]
        W = Wf.reshape(m1, m2, mo)
        xi = xs[a]
        av = avs[b]
        # contract the attributes first (cheap), then the features
        Wa = jnp.einsum("nv,uvw->nuw", av, W, precision=HIGHEST)
        y = jnp.einsum("num,nuw->nwm", xi, Wa, precision=HIGHEST) / math.sqrt(fan[c])
        blocks[c] = y if blocks[c] is None else blocks[c] + y
    out = []
    for c, (mo, l, _) in enumerate(irreps_out):
        bl = blocks[c]
        if bl is None:
            bl = jnp.zeros((N, mo, 2 * l + 1), x.dtype)
        out.append(bl.reshape(N, mo * (2 * l + 1)))
    return jnp.concatenate(out, axis=-1)


# -- uvu tensor product with per-edge weights (nequip's convolution) -------------------------
def uvu_instructions(irreps_in: Irreps, irreps_sh: Irreps, irreps_out: Irreps):
    """nequip's InteractionBlock instructions, in torch order: [(i_in, j_sh, (mul, l_out, p_out))], and the
    mid irreps sorted/simplified as torch does, plus the slot permutation p (unsorted k → sorted slot)."""
    mid, ins = [], []
    for i, (mul, l1, p1) in enumerate(irreps_in):
        for j, (_, l2, p2) in enumerate(irreps_sh):
            for lo, po in ir_product(l1, p1, l2, p2):
                if contains_ir(irreps_out, lo, po):
                    ins.append((i, j, len(mid)))
                    mid.append((mul, lo, po))
    mid_sorted, p = sort_irreps(tuple(mid))
    return ins, tuple(mid), mid_sorted, p


def uvu_mid(irreps_in: Irreps, irreps_sh: Irreps, irreps_out: Irreps) -> Irreps:
    """Output irreps of :func:`uvu_apply` (the mid irreps, sorted and simplified as torch does)."""
    return simplify(uvu_instructions(irreps_in, irreps_sh, irreps_out)[2])


def uvu_numel(irreps_in, irreps_sh, irreps_out) -> int:
    ins, mid, _, _ = uvu_instructions(irreps_in, irreps_sh, irreps_out)
    return sum(mid[k][0] * irreps_sh[j][0] for _, j, k in ins)


def uvu_apply(x_edge, sh, w, irreps_in: Irreps, irreps_sh: Irreps, irreps_out: Irreps):
    """e3nn ``TensorProduct(..., 'uvu', shared_weights=False)`` as built by nequip.

    x_edge (E, dim_in) sender features, sh (E, dim_sh), w (E, numel) per-edge weights laid out in
    unsorted instruction order (mul_in per path). Returns (E, dim(mid_sorted)), blocks in torch's sorted
    slot order; each path has coefficient √(2l_out+1)·CG (e3nn component / element normalisation).
    """
    from e3nn_jax import clebsch_gordan

    ins, mid, mid_sorted, p = uvu_instructions(irreps_in, irreps_sh, irreps_out)
    E = x_edge.shape[0]
    slots = [None] * len(mid)
    xs = irreps_blocks(x_edge, irreps_in)
    ys = split_blocks(sh, [m * (2 * l + 1) for m, l, _ in irreps_sh])
    ws = split_blocks(w, [irreps_in[i][0] for i, _, _ in ins])
    for (i, j, k), wk in zip(ins, ws):
        mul, l1, _ = irreps_in[i]
        _, l2, _ = irreps_sh[j]
        if irreps_sh[j][0] != 1:
            raise IrrepsError("edge spherical harmonics must have multiplicity 1")
        lo = mid[k][1]
        cg = np.asarray(clebsch_gordan(l1, l2, lo)) * math.sqrt(2 * lo + 1)
        cg = jnp.asarray(cg, dtype=x_edge.dtype)
        xy = jnp.einsum("eui,ej,ijk->euk", xs[i], ys[j], cg, precision=HIGHEST)
        slots[p[k]] = (xy * wk[:, :, None]).reshape(E, mul * (2 * lo + 1))
    return jnp.concatenate(slots, axis=-1)


# -- gate -------------------------------------------------------------------------------------
#: e3nn-torch ``normalize2mom`` constants (Monte Carlo, seed 0), *not* e3nn-jax's.
ACT_NORM = {"silu": 1.6791767923989418, "tanh": 1.5937334472592695}
ACTS = {"silu": jax.nn.silu, "tanh": jnp.tanh}


def gate_layout(irreps_scalars: Irreps, irreps_gates: Irreps, irreps_gated: Irreps):
    """Offsets of the scalars, gates and gated blocks inside e3nn's Gate input
    (sorted(scalars + gates + gated), stable), in their own (unsorted) order."""
    sc, ga, gd = simplify(irreps_scalars), simplify(irreps_gates), simplify(irreps_gated)
    allirr = sc + ga + gd
    sorted_irr, p = sort_irreps(allirr)
    offs_sorted = offsets(sorted_irr)
    offs = [offs_sorted[p[i]] for i in range(len(allirr))]
    n1, n2 = len(sc), len(ga)
    return (sc, offs[:n1]), (ga, offs[n1:n1 + n2]), (gd, offs[n1 + n2:]), simplify(sorted_irr)


def gate_apply(x, irreps_scalars: Irreps, irreps_gates: Irreps, irreps_gated: Irreps,
               act_scalars: dict, act_gates: dict):
    """e3nn ``Gate``: x laid out as gate_layout's input irreps → scalars' acts ⊕ gated·act(gates).
    act_* map parity (+1/−1) to an activation name ('silu' or 'tanh'), normalised with torch constants."""
    (sc, sc_off), (ga, ga_off), (gd, gd_off), _ = gate_layout(irreps_scalars, irreps_gates, irreps_gated)
    batch = x.shape[:-1]
    out = []
    for (m, l, p), o in zip(sc, sc_off):
        name = act_scalars[p]
        out.append(ACTS[name](x[..., o:o + m]) * jnp.asarray(ACT_NORM[name], x.dtype))
    gates = []
    for (m, l, p), o in zip(ga, ga_off):
        name = act_gates[p]
        gates.append(ACTS[name](x[..., o:o + m]) * jnp.asarray(ACT_NORM[name], x.dtype))
    if gd:
        g = jnp.concatenate(gates, axis=-1)
        c = 0
        for (m, l, p), o in zip(gd, gd_off):
            d = 2 * l + 1
            v = x[..., o:o + m * d].reshape(*batch, m, d) * g[..., c:c + m, None]
            out.append(v.reshape(*batch, m * d))
            c += m
    return jnp.concatenate(out, axis=-1)


def check_activation(name: str) -> str:
    if name not in ACTS:
        raise IrrepsError(f"unsupported activation {name!r} (supported: {sorted(ACTS)})")
    return name

