"""The seed study's long-range strategies (``--lr MODE``), each as a :class:`Correction`.

A Correction holds the force constants the engine Fourier-transforms (``short_range_fc``) and a q-space term
that ``apply`` adds to C(q) (phonopy's C-type phase convention, eV/Å², not mass-weighted):

=============  =====================================================================================
mode           short_range_fc                         added at every q
=============  =====================================================================================
none           fc                                     nothing
na             fc                                     Eq. 5 non-analytic term, only at q = 0 with a direction
ewald          fc                                     full Ewald C_dd(q) (seed (a); double counts what the
                                                      supercell already contains)
ewald-leak     fc − H_DD-Leak(region)                 full Ewald C_dd(q) (seed (b, c))
recip          fc                                     reciprocal-only C_dd(q) with Λ (Eq. 13, seed's best);
                                                      Λ-dependent by construction
gonze          fc − fc_dd (commensurate-q subtraction) C_dd(q) (phonopy DynamicalMatrixGL / QE q2r+matdyn):
  (auto: DFT)                                         frequencies at commensurate q unchanged
wang           fc                                     C_na(q̂ = q/|q|) ⊙ W(q) (Wang et al. 2010)
recip-auto     fc                                     reciprocal-only C_dd(q) with Λ* fitted to the force
                                                      constants' own polar response near Γ
                                                      (:mod:`~phonjax.longrange.range_matched`): for ML force
                                                      constants that hold the short-ranged (real-space) part
=============  =====================================================================================

``recip-auto`` (issue 10, range-matched): Λ* = :func:`~phonjax.longrange.range_matched.fit_model_lambda` of
(fc, supercell, born) — deterministic, independent of any user Λ (``ewald_lambda`` is refused); ``Correction.lam``
is Λ* and ``info["lambda_fit"]`` the fit record. For DFT force constants, which hold the supercell-periodic
dipole sum, use ``gonze``.

``lo_projection=True`` (seed follow-up d): every dipole term D added or subtracted is replaced by
Q D Qᵀ with Q[ia, jb] = δ_ij δ_ab − m_i δ_ab / Σm — in mass-weighted coordinates the orthogonal projector onto
the complement of the three rigid translations (the acoustic subspace at Γ), so the correction acts only on
optical (polar) modes and cannot shift a rigid translation at any q (the translation pattern is taken in the
gauge of the shortest representative of q, and the projected term is carried to other representatives with
the C-type phase so it stays periodic). For ``gonze`` the projected term is used for both the subtraction and
the addition, so commensurate frequencies remain unchanged.

Λ conventions: Λ is phonopy's (Gaussian exp(−K·ε·K/4Λ²), K = q + G in 1/Å without 2π).
* gonze: phonopy's G list (300 points) and Λ (Gaussian 1e-10 at the cutoff) unless ``ewald_lambda`` is given
  (then phonopy's G list with that Λ, as phonopy's BORN-file Λ); ``gonze_full_ewald=True`` uses the full
  Λ-independent Ewald sum instead.
* recip: phonopy's defaults without ``ewald_lambda``; with it, the G cutoff follows from Λ and ``tolerance``.
* ewald, ewald-leak: full Ewald, Λ-independent (``ewald_lambda`` only moves work between the two sums).

Registry: :func:`register` maps a mode name to a builder ``build(request: BuildRequest) -> Correction``
(:mod:`phonjax.longrange.correction`); the built-in builders are one module each in
:mod:`phonjax.longrange.builders`. :func:`make_correction` validates the common options and calls the builder.
Which mode ``auto`` means is decided in :mod:`phonjax.longrange.policy`. Measured comparisons of the modes are in
README.md and reports/, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from phonjax.born import Born, BornError
from phonjax.structure import Supercell
from phonjax.longrange.builders import ewald, gonze, na, none, recip, recip_auto, wang
from phonjax.longrange.correction import BuildRequest, Correction, LongRangeModeError, acoustic_projector

__all__ = ["MODES", "Correction", "make_correction", "LongRangeModeError", "acoustic_projector", "register",
           "unregister", "modes", "Strategy"]


@dataclass(frozen=True)
class Strategy:
    """A registered mode: builder(request) -> Correction; needs_born: refuse without Born data; options: the
    optional request fields it reads besides Λ (e.g. ("leak_region",)), any other one set is refused."""

    name: str
    builder: Callable[[BuildRequest], Correction]
    needs_born: bool = True
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, Strategy] = {}


def register(name: str, builder: Callable[[BuildRequest], Correction], *, needs_born: bool = True,
             options: tuple[str, ...] = ()) -> Strategy:
    """Register ``builder`` as long-range mode ``name`` (a new name; "auto" is reserved)."""
    if not isinstance(name, str) or not name or name == "auto" or name in _REGISTRY:
        raise LongRangeModeError(f"cannot register long-range mode {name!r} (empty, 'auto' or already registered)")
    s = Strategy(name, builder, bool(needs_born), tuple(options))
    _REGISTRY[name] = s
    return s


def unregister(name: str) -> None:
    """Remove a mode registered with :func:`register` (built-in modes cannot be removed)."""
    if name in MODES or name not in _REGISTRY:
        raise LongRangeModeError(f"cannot unregister long-range mode {name!r}")
    del _REGISTRY[name]


def modes() -> tuple[str, ...]:
    """Every registered mode name, built-ins first."""
    return tuple(_REGISTRY)


def make_correction(lr: str, born: Born | None, supercell: Supercell, fc, *, ewald_lambda: float | None = None,
                    leak_region=None, tolerance: float = 1e-12, lo_projection: bool = False,
                    gonze_full_ewald: bool = False, num_g_points: int = 300) -> Correction:
    """Build the Correction for mode ``lr`` (see module docstring).

    born: required for every mode registered with ``needs_born`` (all built-ins but "none").  supercell: the
    force-constant supercell (:func:`phonjax.structure.make_supercell`).  fc: (n_prim, n_super, 3, 3) eV/Å².
    leak_region: "sphere:R" / "box:N N N" (ewald-leak only).  tolerance: Ewald truncation target.
    """
    if lr not in _REGISTRY:
        raise LongRangeModeError(f"unknown long-range mode {lr!r}; choose one of {', '.join(_REGISTRY)}")
    strategy = _REGISTRY[lr]
    fc = np.asarray(fc, dtype=np.float64)
    n, ns = supercell.primitive.n_atoms, supercell.crystal.n_atoms
    if fc.shape != (n, ns, 3, 3):
        raise ValueError(f"force constants have shape {fc.shape}, expected {(n, ns, 3, 3)}")
    if leak_region is not None and "leak_region" not in strategy.options:
        raise LongRangeModeError(f"leak_region is only used by lr='ewald-leak', not {lr!r}")
    if strategy.needs_born:
        if born is None:
            raise LongRangeModeError(f"lr={lr!r} needs Born charges and ε∞ (born=...)")
        if born.n_atoms != n:
            raise BornError(f"Born charges for {born.n_atoms} atoms, primitive cell has {n}")
    req = BuildRequest(born, supercell, fc, ewald_lambda, leak_region, tolerance, bool(lo_projection),
                       bool(gonze_full_ewald), int(num_g_points))
    return strategy.builder(req)


register("none", none.build, needs_born=False)
register("na", na.build)
register("ewald", ewald.build)
register("ewald-leak", ewald.build_leak, options=("leak_region",))
register("recip", recip.build)
register("gonze", gonze.build)
register("wang", wang.build)
register("recip-auto", recip_auto.build)
#: the built-in modes, in the order ``--lr`` lists them
MODES = modes()
