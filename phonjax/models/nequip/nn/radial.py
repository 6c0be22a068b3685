"""Radial pieces of NequIP: Bessel basis, polynomial cutoff, bias-free scalar MLPs (nequip's ScalarMLPFunction),
and SevenNet's variants (XPLOR switching cutoff, e3nn ``FullyConnectedNet`` with normalised activations).

All functions are pure jnp. Lengths are in Å; ``x = r / r_max`` is dimensionless.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from phonjax.models.nequip.nn.irreps import ACT_NORM, HIGHEST


def polynomial_cutoff(x, p: float):
    """DimeNet/nequip polynomial envelope u(x) = 1 − (p+1)(p+2)/2·x^p + p(p+2)·x^(p+1) − p(p+1)/2·x^(p+2)
    for x < 1, else 0. Integer p uses integer powers (smooth Hessians)."""
    p = float(p)

    def pw(e):
        return x ** int(e) if float(e).is_integer() else jnp.power(x, e)

    out = 1.0
    out = out - ((p + 1.0) * (p + 2.0) / 2.0) * pw(p)
    out = out + (p * (p + 2.0)) * pw(p + 1.0)
    out = out - (p * (p + 1.0) / 2) * pw(p + 2.0)
    return out * (x < 1.0)


def xplor_cutoff(r, r_on: float, r_cut: float):
    """XPLOR switching function (SevenNet): 1 for r < r_on, (r_c²−r²)²(r_c²+2r²−3r_on²)/(r_c²−r_on²)³ for
    r_on ≤ r < r_c, 0 beyond. r in Å (any shape); C¹ at r_on and r_c."""
    r_on, r_cut = float(r_on), float(r_cut)
    r2, on2, c2 = r * r, r_on * r_on, r_cut * r_cut
    s = (c2 - r2) ** 2 * (c2 + 2.0 * r2 - 3.0 * on2) / (c2 - on2) ** 3
    return jnp.where(r < r_on, 1.0, jnp.where(r < r_cut, s, 0.0))


def bessel_basis(x, weights):
    """nequip's Bessel encoding sinc(x·w)·w = sin(π w x)/(π x). x (E, 1), weights (1, n) → (E, n)."""
    return jnp.sinc(x * weights) * weights


MLP_ACTS = {"silu": jax.nn.silu, "tanh": jnp.tanh, None: None}


def mlp_alphas(dims: Sequence[int], nonlinearity) -> list[float]:
    """nequip ScalarMLPFunction (forward_weight_init=True) weight scales: gain/√fan_in, gain = 1 for the
    first layer or without nonlinearity, √2 otherwise."""
    out = []
    for layer, h_in in enumerate(dims[:-1]):
        gain = 1.0 if nonlinearity is None or layer == 0 else math.sqrt(2)
        out.append(gain / math.sqrt(h_in))
    return out


def mlp_apply(weights: Sequence, x, nonlinearity):
    """Bias-free MLP: x @ (W_0 α_0) → act → … → x @ (W_k α_k) (no activation after the last layer).
    weights[k] has shape (dims[k], dims[k+1])."""
    dims = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    alphas = mlp_alphas(dims, nonlinearity)
    act = MLP_ACTS[nonlinearity]
    for k, (w, a) in enumerate(zip(weights, alphas)):
        x = jnp.matmul(x, w * jnp.asarray(a, w.dtype), precision=HIGHEST)
        if act is not None and k < len(weights) - 1:
            x = act(x)
    return x


def fcnet_apply(weights: Sequence, x, nonlinearity: str = "silu"):
    """e3nn ``FullyConnectedNet`` (bias-free, variance_in = variance_out = 1, no output activation):
    x @ (W_k/√fan_in), then c·act(x) on hidden layers with torch e3nn's normalize2mom constant c."""
    act = MLP_ACTS[nonlinearity]
    c = ACT_NORM[nonlinearity]
    for k, w in enumerate(weights):
        x = jnp.matmul(x, w * jnp.asarray(1.0 / math.sqrt(w.shape[0]), w.dtype), precision=HIGHEST)
        if k < len(weights) - 1:
            x = act(x) * jnp.asarray(c, x.dtype)
    return x
