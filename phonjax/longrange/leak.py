"""H_DD-Leak (the seed's Eqs. 10–12, as read here): the part of the dipole–dipole interaction that a
short-ranged ML model presumably already contains, removed from its force constants before the full C_dd is
added (``--lr ewald-leak``).

Reading: the bare screened dipole–dipole pair force constants

    Φ_ij(d) = factor · Z_iᵀ [ ε⁻¹ / (√det ε D³) − 3 Δ Δᵀ / (√det ε D⁵) ] Z_j,   Δ = ε⁻¹ d,  D = √(d·ε⁻¹·d),

for every pair (home atom i, atom j at d = r_j + R − r_i ≠ 0) inside the leak region, summed onto the
supercell atom that represents j (all periodic images inside the region count), plus the self term
fc[i, i] = −Σ_pairs Φ_ij(d) (Hermitian part), so the removed matrix obeys the acoustic sum rule.

Regions: ``sphere:R`` — |d| < R (Å); ``box:N1 N2 N3`` — the fractional coordinates f of d in the primitive
basis satisfy |f_k| ≤ N_k/2, pairs on a face (|f_k| = N_k/2) weighted ½ per such coordinate (an exact tiling
of N1·N2·N3 cells, symmetric under d → −d).
"""
from __future__ import annotations

from dataclasses import dataclass
import itertools
import math
import re

import numpy as np

from phonjax.born import Born
from phonjax.structure import Supercell

__all__ = ["LeakRegion", "parse_leak_region", "leak_fc", "leak_pairs", "leak_q", "LeakRegionError"]


class LeakRegionError(ValueError):
    """Bad leak-region specification."""


@dataclass(frozen=True)
class LeakRegion:
    """kind: "sphere" (radius Å) or "box" (cells: 3 ints)."""

    kind: str
    radius: float = 0.0
    cells: tuple = (0, 0, 0)

    def __post_init__(self):
        if self.kind == "sphere":
            if not (self.radius > 0 and math.isfinite(self.radius)):
                raise LeakRegionError(f"leak sphere radius must be positive, got {self.radius}")
        elif self.kind == "box":
            if len(self.cells) != 3 or any(int(c) != c or c < 1 for c in self.cells):
                raise LeakRegionError(f"leak box needs 3 positive integers, got {self.cells}")
        else:
            raise LeakRegionError(f"unknown leak region kind {self.kind!r} (sphere, box)")


def parse_leak_region(spec) -> LeakRegion:
    """``"sphere:R"``, ``"box:N1 N2 N3"`` (or ``box:N``) or a LeakRegion → LeakRegion."""
    if isinstance(spec, LeakRegion):
        return spec
    if not isinstance(spec, str):
        raise LeakRegionError(f"leak region must be 'sphere:R' or 'box:N N N', got {spec!r}")
    m = re.fullmatch(r"\s*(sphere|box)\s*:\s*(.+?)\s*", spec)
    if not m:
        raise LeakRegionError(f"leak region must be 'sphere:R' or 'box:N N N', got {spec!r}")
    vals = re.split(r"[\s,x]+", m.group(2))
    try:
        if m.group(1) == "sphere":
            if len(vals) != 1:
                raise ValueError
            return LeakRegion("sphere", radius=float(vals[0]))
        n = [int(v) for v in vals]
    except ValueError as e:
        raise LeakRegionError(f"cannot parse leak region {spec!r}") from e
    if len(n) == 1:
        n = n * 3
    if len(n) != 3:
        raise LeakRegionError(f"leak box needs 1 or 3 integers, got {spec!r}")
    return LeakRegion("box", cells=tuple(n))


def _pair_tensor(d: np.ndarray, born: Born, i: int, j: np.ndarray) -> np.ndarray:
    """Φ_ij(d) for vectors d (m, 3) and partner indices j (m,) → (m, 3, 3)."""
    einv = np.linalg.inv(born.epsilon)
    delta = d @ einv.T
    D = np.sqrt(np.einsum("ma,ma->m", d, delta))
    sq = math.sqrt(np.linalg.det(born.epsilon))
    t = einv[None] / (sq * D[:, None, None] ** 3) - 3 * delta[:, :, None] * delta[:, None, :] / (sq * D[:, None, None] ** 5)
    return born.factor * np.einsum("ea,mef,mfb->mab", born.zstar[i], t, born.zstar[j])


def leak_pairs(primitive, born: Born, region):
    """All pairs inside the region: (i (m,), j (m,), d_frac (m, 3) primitive-fractional d, phi (m, 3, 3)
    weighted Φ_ij(d)), and the ASR self blocks (n, 3, 3)."""
    region = parse_leak_region(region)
    prim = primitive
    n = prim.n_atoms
    cell = prim.cell
    inv = np.linalg.inv(cell)
    if region.kind == "sphere":
        reach = region.radius + np.linalg.norm(cell, axis=1).sum()
        nmax = np.ceil(reach * np.linalg.norm(inv, axis=0)).astype(int) + 1
    else:
        nmax = np.array(region.cells) // 2 + 2
    grid = np.array(list(itertools.product(*[range(-m, m + 1) for m in nmax])))
    I, J, F, P = [], [], [], []
    selfb = np.zeros((n, 3, 3))
    for i in range(n):
        for j in range(n):
            f = prim.scaled_positions[j] + grid - prim.scaled_positions[i]
            d = f @ cell
            dist = np.linalg.norm(d, axis=1)
            if region.kind == "sphere":
                w = (dist < region.radius).astype(float)
            else:
                half = np.array(region.cells) / 2.0
                a = np.abs(f)
                inside = np.all(a <= half + 1e-8, axis=1)
                on_face = np.abs(a - half) <= 1e-8
                w = inside * np.prod(np.where(on_face, 0.5, 1.0), axis=1)
            w[dist < 1e-8] = 0.0
            sel = w > 0
            if not np.any(sel):
                continue
            phi = _pair_tensor(d[sel], born, i, np.full(sel.sum(), j)) * w[sel, None, None]
            selfb[i] -= phi.sum(0)
            I.append(np.full(sel.sum(), i)); J.append(np.full(sel.sum(), j)); F.append(f[sel]); P.append(phi)
        selfb[i] = 0.5 * (selfb[i] + selfb[i].T)
    if not I:
        return (np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3)), np.zeros((0, 3, 3)), selfb)
    return np.concatenate(I), np.concatenate(J), np.concatenate(F), np.concatenate(P), selfb


def leak_q(q_red, primitive, pairs) -> np.ndarray:
    """Direct Fourier transform (phonopy convention) of the leak pairs: (nq, n, 3, n, 3) complex."""
    I, J, F, P, selfb = pairs
    q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
    n = primitive.n_atoms
    out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
    ph = np.exp(2j * np.pi * q @ F.T)  # (nq, m)
    for i in range(n):
        out[:, i, :, i, :] += selfb[i]
        for j in range(n):
            sel = (I == i) & (J == j)
            if np.any(sel):
                out[:, i, :, j, :] += np.einsum("qm,mab->qab", ph[:, sel], P[sel])
    return out


def leak_fc(supercell: Supercell, born: Born, region) -> np.ndarray:
    """H_DD-Leak as supercell force constants (n_prim, n_super, 3, 3) eV/Å²: every pair folded onto the
    supercell atom that represents its partner (see module docstring)."""
    prim = supercell.primitive
    I, J, F, P, selfb = leak_pairs(prim, born, region)
    n, ns = prim.n_atoms, supercell.crystal.n_atoms
    fc = np.zeros((n, ns, 3, 3))
    sfrac = supercell.crystal.scaled_positions
    Minv = np.linalg.inv(supercell.matrix.astype(np.float64))
    for i, j, f, ph in zip(I, J, F, P):
        p = (prim.scaled_positions[i] + f) @ Minv  # partner position in supercell fractional coordinates
        dd = sfrac - p
        dd -= np.round(dd)
        s = int(np.argmin(np.linalg.norm(dd @ supercell.crystal.cell, axis=1)))
        fc[i, s] += ph
    for i in range(n):
        fc[i, i] += selfb[i]
    return fc
