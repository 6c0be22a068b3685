"""Range-matched Ewald Λ: how much of the dipole–dipole interaction do (ML) force constants already hold?

Issue 10, part 2. A pretrained machine-learning potential reproduces DFT forces *locally*, so its force
constants contain the short-ranged part of the dipole–dipole interaction but not the long-ranged part that
produces the LO–TO splitting. Ewald splits the interaction exactly, C_dd = real(Λ) + recip(Λ), with the
reciprocal part (Gaussian exp(−K·ε·K/4Λ²), K = q + G) long-ranged in real space and the real-space (erfc) part
short-ranged. Hypothesis: the model holds real(Λ*) for one Λ* set by its effective range, so the consistent
correction is to add recip(Λ*) — nothing at commensurate points is special and nothing is counted twice.

Criterion (automatic, deterministic, no user Λ): fit Λ* to the model's *own* polar response near Γ. For a
unit direction q̂ and the mass-weighted longitudinal / transverse polar patterns

    p_L[j, b] = (q̂·Z_j)_b / √m_j ,   p_T = the same with two unit vectors ê ⊥ q̂ (averaged),

the no-NAC dynamical matrix D(q) of the force constants gives the dimensionless splitting profile

    f(t) = [p_L·D(t q̂)·p_L / |p_L|² − ⟨p_T·D(t q̂)·p_T / |p_T|²⟩] / Δ_NA ,  Δ_NA = factor·4π/V·|p_L|²/(q̂·ε·q̂),

i.e. the fraction of the Γ non-analytic LO–TO splitting (Eq. 5) that the force constants reproduce at |q| = t
(1/Å, no 2π). If they hold real(Λ) = C_dd − recip(Λ), then (G ≠ 0 Gaussians negligible, checked below)

    f(t) = 1 − exp(−t²·(q̂·ε·q̂)/4Λ²) + a_q̂ t² ,

with a_q̂ the short-range L–T anisotropy (analytic, ∝ t² at small t). Λ (one for all directions) and a_q̂
(one per direction) are fitted by least squares on t ∈ (0, window·t_BZ(q̂)], t_BZ the distance from Γ to the
Brillouin-zone boundary along q̂: for each Λ the a_q̂ are linear (closed form), and Λ is minimised on a log grid
over [Λ_ph/50, Λ_ph] (Λ_ph: phonopy's default Λ, where recip ≈ full Ewald) and refined by a bounded scalar
search. The scale of Z* is not fitted: the model is assumed to hold the full-strength short-range part of the
DFT Z*/ε∞ interaction; only the range is unknown (a free scale proved unstable across directions, while Λ alone
agrees across directions; see reports/longrange_modes.md).

Measured values of Λ* and of the rejected alternatives: reports/longrange_modes.md.

Default directions: the Cartesian axes, the three face diagonals and the body diagonal (7; directions without
LO–TO splitting are skipped). Units: Λ in 1/Å without 2π (phonopy's convention), t in 1/Å without 2π.
"""
from __future__ import annotations

from dataclasses import dataclass
import itertools
import math

import numpy as np

from phonjax.born import Born, BornError
from phonjax.structure import Supercell

__all__ = ["LambdaFit", "RangeMatchError", "polar_splitting_profile", "fit_model_lambda", "DEFAULT_DIRECTIONS",
           "bz_distance"]

DEFAULT_DIRECTIONS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]],
                              dtype=np.float64)
#: a direction's Γ splitting below this fraction of the largest one is not fitted
_MIN_SPLITTING = 1e-6
#: the Λ search spans [Λ_ph / _SPAN, Λ_ph]
_SPAN = 50.0


class RangeMatchError(ValueError):
    """The force constants / Born data admit no range fit (no LO–TO splitting, bad options)."""


@dataclass(frozen=True, eq=False)
class LambdaFit:
    """Result of :func:`fit_model_lambda`.

    lam: fitted Λ* (1/Å, no 2π, phonopy convention).  directions: (nd, 3) Cartesian unit vectors fitted.
    t: (nd, nt) |q| sample points (1/Å, no 2π).  profiles: (nd, nt) measured f(t).  anisotropy: (nd,) a_q̂ (Å²).
    rms: root-mean-square residual of the joint fit (dimensionless).  per_direction: (nd,) Λ fitted for each
    direction alone (spread = how well one Λ describes all).  lam_bounds: (Λ_min, Λ_max) searched.
    at_bound: the optimum lies on a bound (the model of the profile does not apply).  window: fit window as
    fraction of the distance to the zone boundary.  g_leak: largest exp(−G·ε·G/4Λ*²) over G ≠ 0 (the analytic
    profile neglects these terms; ≪ 1 when the fit is self-consistent).  gaussian_at_edge: largest
    exp(−t_max²·q̂·ε·q̂/4Λ*²) over the directions: how far the Gaussian has decayed at the end of the window.
    Near 1 the profile stays in its t² regime, where Λ is degenerate with the anisotropy a_q̂ (poorly
    determined).
    """

    lam: float
    directions: np.ndarray
    t: np.ndarray
    profiles: np.ndarray
    anisotropy: np.ndarray
    rms: float
    per_direction: np.ndarray
    lam_bounds: tuple
    at_bound: bool
    window: float
    g_leak: float
    gaussian_at_edge: float

    def as_dict(self) -> dict:
        return {"lambda": self.lam, "lambda_per_direction": self.per_direction.tolist(),
                "directions": self.directions.tolist(), "anisotropy_A2": self.anisotropy.tolist(),
                "rms": self.rms, "lambda_bounds": list(self.lam_bounds), "at_bound": self.at_bound,
                "window": self.window, "n_points": int(self.t.shape[1]), "g_leak": self.g_leak,
                "gaussian_at_edge": self.gaussian_at_edge,
                "criterion": "fit of the no-NAC polar L-T splitting profile near Gamma (range_matched.py)"}


def bz_distance(direction, cell) -> float:
    """Distance t (1/Å, no 2π) from Γ to the first Brillouin-zone boundary along Cartesian ``direction``."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    rec = np.linalg.inv(np.asarray(cell, dtype=np.float64)).T  # rows b_j, no 2π
    n = np.array([v for v in itertools.product(range(-3, 4), repeat=3) if v != (0, 0, 0)], dtype=np.float64)
    G = n @ rec
    proj = G @ d
    ok = proj > 1e-12
    return float(np.min(np.sum(G[ok] ** 2, axis=1) / (2 * proj[ok])))


def _patterns(direction, born: Born, masses):
    """(p_L (3n,), [p_T1, p_T2], q̂) mass-weighted polar patterns for Cartesian direction q̂."""
    qh = np.asarray(direction, dtype=np.float64)
    qh = qh / np.linalg.norm(qh)
    helper = np.eye(3)[np.argmin(np.abs(qh))]
    u = np.cross(qh, helper)
    u /= np.linalg.norm(u)
    w = np.cross(qh, u)
    ism = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=np.float64)), 3)

    def vec(e):
        return np.einsum("a,iab->ib", e, born.zstar).reshape(-1) * ism

    return vec(qh), [vec(u), vec(w)], qh


def polar_splitting_profile(fc, supercell: Supercell, born: Born, direction, t, *, images=None) -> np.ndarray:
    """f(t) (nt,) for force constants fc (n_prim, n_super, 3, 3) eV/Å² along Cartesian ``direction`` at
    |q| = t (1/Å, no 2π); see the module docstring. Raises RangeMatchError if the direction has no LO–TO
    splitting."""
    from phonjax.dynmat import mass_weighted
    from phonjax.fourier import fourier_fc, ws_images

    prim = supercell.primitive
    if born.n_atoms != prim.n_atoms:
        raise BornError(f"Born charges for {born.n_atoms} atoms, primitive cell has {prim.n_atoms}")
    pL, pTs, qh = _patterns(direction, born, prim.masses)
    nL = float(pL @ pL)
    dna = born.nac_prefactor(prim.volume) * nL / float(qh @ born.epsilon @ qh)
    if not dna > 0:
        raise RangeMatchError(f"no LO–TO splitting along {np.round(qh, 6).tolist()}: nothing to fit")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    q_red = np.outer(t, qh) @ prim.cell.T  # Cartesian (no 2π) → reduced
    im = ws_images(supercell) if images is None else images
    n = prim.n_atoms
    D = mass_weighted(fourier_fc(fc, supercell, q_red, images=im).reshape(len(t), 3 * n, 3 * n), prim.masses)

    def rq(p):
        return np.einsum("i,qij,j->q", p, D, p).real / float(p @ p)

    kT = np.mean([rq(p) for p in pTs if p @ p > 1e-12 * nL] or [np.zeros(len(t))], axis=0)
    return (rq(pL) - kT) / dna


def _residual(lam, x2, t2, f):
    """Joint residual for Λ with the per-direction a solved in closed form. x2: (nd,) q̂·ε·q̂; t2 (nd, nt)."""
    g = 1.0 - np.exp(-x2[:, None] * t2 / (4 * lam ** 2))
    r = f - g  # = a t² + residual
    a = np.sum(r * t2, axis=1) / np.sum(t2 * t2, axis=1)
    res = r - a[:, None] * t2
    return float(np.sum(res ** 2)), a


def _minimise(x2, t2, f, lo, hi, n_grid=241):
    from scipy.optimize import minimize_scalar

    grid = np.exp(np.linspace(np.log(lo), np.log(hi), n_grid))
    vals = np.array([_residual(lam, x2, t2, f)[0] for lam in grid])
    k = int(np.argmin(vals))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, n_grid - 1)]
    if a < b:
        r = minimize_scalar(lambda s: _residual(math.exp(s), x2, t2, f)[0], bounds=(math.log(a), math.log(b)),
                            method="bounded", options={"xatol": 1e-10})
        lam = math.exp(r.x) if r.fun <= vals[k] else float(grid[k])
    else:
        lam = float(grid[k])
    at_bound = k == 0 or k == n_grid - 1
    return lam, at_bound


def fit_model_lambda(fc, supercell: Supercell, born: Born, *, directions=None, window: float = 0.5,
                     n_points: int = 24) -> LambdaFit:
    """Fit Λ* to the polar splitting profile of force constants fc (n_prim, n_super, 3, 3) eV/Å² (see module).

    directions: (nd, 3) Cartesian (default :data:`DEFAULT_DIRECTIONS`).  window: fit |q| up to this fraction of
    the distance to the zone boundary (0 < window ≤ 1).  n_points: samples per direction.
    Deterministic; independent of any user Λ.
    """
    from phonjax.fourier import ws_images
    from phonjax.longrange.ewald import phonopy_recip_parameters

    if born is None:
        raise RangeMatchError("the range-matched Λ needs Born charges and ε∞ (born=...)")
    if not (0 < window <= 1):
        raise RangeMatchError(f"window must be in (0, 1], got {window}")
    if int(n_points) < 4:
        raise RangeMatchError(f"n_points must be at least 4, got {n_points}")
    fc = np.asarray(fc, dtype=np.float64)
    prim = supercell.primitive
    if born.n_atoms != prim.n_atoms:
        raise BornError(f"Born charges for {born.n_atoms} atoms, primitive cell has {prim.n_atoms}")
    dirs = DEFAULT_DIRECTIONS if directions is None else np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    if np.any(np.linalg.norm(dirs, axis=1) < 1e-12):
        raise RangeMatchError("directions must be non-zero vectors")
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    # Γ splitting per direction: skip directions without one
    split = []
    for d in dirs:
        pL, _, qh = _patterns(d, born, prim.masses)
        split.append(born.nac_prefactor(prim.volume) * float(pL @ pL) / float(qh @ born.epsilon @ qh))
    split = np.array(split)
    if not np.any(split > 0):
        raise RangeMatchError("the Born charges give no LO–TO splitting in any direction: nothing to fit")
    dirs = dirs[split > _MIN_SPLITTING * split.max()]
    im = ws_images(supercell)
    ts, fs = [], []
    for d in dirs:
        t = np.linspace(0.0, window * bz_distance(d, prim.cell), int(n_points) + 1)[1:]
        ts.append(t)
        fs.append(polar_splitting_profile(fc, supercell, born, d, t, images=im))
    t, f = np.array(ts), np.array(fs)
    x2 = np.einsum("da,ab,db->d", dirs, born.epsilon, dirs)
    t2 = t ** 2
    hi = phonopy_recip_parameters(prim, born).lam
    lo = hi / _SPAN
    lam, at_bound = _minimise(x2, t2, f, lo, hi)
    ssq, a = _residual(lam, x2, t2, f)
    per = np.array([_minimise(x2[k:k + 1], t2[k:k + 1], f[k:k + 1], lo, hi)[0] for k in range(len(dirs))])
    rec = np.linalg.inv(prim.cell).T
    n = np.array([v for v in itertools.product(range(-2, 3), repeat=3) if v != (0, 0, 0)], dtype=np.float64) @ rec
    g_leak = float(np.exp(-np.einsum("ga,ab,gb->g", n, born.epsilon, n) / (4 * lam ** 2)).max())
    edge = float(np.exp(-x2 * t[:, -1] ** 2 / (4 * lam ** 2)).max())
    return LambdaFit(float(lam), dirs, t, f, a, math.sqrt(ssq / f.size), per, (float(lo), float(hi)),
                     bool(at_bound), float(window), g_leak, edge)
