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
  (default)                                           frequencies at commensurate q unchanged
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

Measured (benchmarks/longrange_modes.py, longrange_ml.py; LiF):
* Λ-dependence vs gonze at phonopy's default Λ, max over (¼,¼,¼), X, L: recip 1.4 THz at Λ = 0.1 growing to
  11.8 THz for Λ ≥ 0.3 (where it equals ewald); ewald / ewald-leak Λ-independent (< 1e-7 THz); gonze ≤ 3e-3
  THz for 0.15 ≤ Λ ≤ 0.3, 0.19 THz at Λ = 0.1 and 0.5, 7.7 THz at 1.0 (commensurate q exact for any Λ).
* DFT (phonopy) force constants: ewald and recip double count the supercell's dipoles (TO(Γ) → 0, imaginary
  branches, RMS vs gonze 6.3 / 4.3 THz); wang 0.34 THz; na only fixes Γ.
* SevenNet-0 force constants vs QE DFPT (RMSE cm⁻¹, prim 3³ / conv 2³ / conv 3³): none 87/87/81, na 84/84/77,
  gonze 39/41/48, wang 40/41/46, recip 201/194/201, ewald 248/243/249, ewald-leak sphere:5 112/110/107,
  gonze+LO-projection 67/44/49.
* ewald-leak does not converge to gonze as the sphere grows (LiF DFT, RMS vs gonze 2.30 / 2.08 / 2.08 THz for
  R = 3 / 5 / 9 Å, TO(Γ) imaginary −5.3 THz for every R): bare pairs cannot remove the conditionally convergent,
  Ewald-periodic (G = 0 excluded) part of the supercell's dipole sum; only the commensurate subtraction can.
  gonze with full Ewald equals the reciprocal-only gonze to 6e-7 THz.
* recip-auto (benchmarks/longrange_supercell.py; SevenNet-0 via phonjax, engine frequencies with q-space ASR,
  vs QE DFPT, RMSE THz for prim 3³ / conv 2³ / prim 4³ / conv 3³ / prim 5³ = 54 / 64 / 128 / 216 / 250 atoms):
  recip-auto 1.03 / 0.96 / 1.06 / 1.08 / 1.08 (Λ* = 0.089 / 0.086 / 0.070 / 0.066 / 0.066) vs gonze 1.17 / 1.24 /
  1.27 / 1.43 / 1.41 and wang 1.19 / 1.23 / 1.26 / 1.39 / 1.40; largest LO error on the first half of Γ–X
  recip-auto 2.8–6.8 % vs gonze 9.6–30.7 % (the commensurate-point dip); the rest is the model's softness
  (RMSE without LO ≈ 1.0 THz in every mode). MgO (new QE DFPT reference, not tuned on): recip-auto 1.00 / 0.96 /
  1.02 / 1.03 / 1.03 vs gonze 1.05 / 1.06 / 1.13 / 1.18 / 1.19. A LiF-finetuned SevenNet-0 (trained on 54-atom
  supercells): gonze best in that training supercell (0.33 vs 0.57), recip-auto best from 128 atoms on (0.29–0.32
  vs gonze 0.40–0.62). On phonopy's DFT force constants recip-auto differs from gonze by up to 0.32 THz (NaCl) /
  1.00 THz (MgO): use gonze there (and for force constants of a model in the supercell it was trained on).
* LO projection: the acoustic subspace is only defined per representative q, so the projected term jumps on
  the zone boundary (visible along W–K) and its commensurate inverse transform gets long-ranged tails
  (imaginary modes with the 54-atom primitive supercell of the ML model).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phonjax.born import Born, BornError
from phonjax.structure import Supercell
from phonjax.longrange.ewald import (Q_ZERO_TOL, DipoleKernel, bz_representatives, check_q_direction,
                                     ewald_parameters, make_dipole_kernel, phonopy_recip_parameters)
from phonjax.longrange.gonze import gonze_short_range_fc, ws_images, ws_phase_sum
from phonjax.longrange.leak import leak_fc, leak_pairs, leak_q, parse_leak_region

__all__ = ["MODES", "DEFAULT_MODE", "Correction", "make_correction", "LongRangeModeError", "acoustic_projector"]

MODES = ("none", "na", "ewald", "ewald-leak", "recip", "gonze", "wang", "recip-auto")
DEFAULT_MODE = "gonze"


class LongRangeModeError(ValueError):
    """Unknown ``lr`` mode or inconsistent options."""


def acoustic_projector(masses) -> np.ndarray:
    """Q (3n, 3n): Q[ia, jb] = δ_ij δ_ab − m_i δ_ab / Σm (see module docstring)."""
    m = np.asarray(masses, dtype=np.float64)
    n = len(m)
    Q = np.eye(3 * n) - np.kron(np.outer(m, np.ones(n)) / m.sum(), np.eye(3))
    return Q


@dataclass(frozen=True, eq=False)
class Correction:
    """A long-range strategy bound to one supercell and its force constants.

    mode: one of :data:`MODES`.  short_range_fc: (n_prim, n_super, 3, 3) eV/Å² for the Fourier transform.
    removed_fc: what was subtracted from fc (fc_dd for gonze, H_DD-Leak for ewald-leak, else zeros).
    lam: Λ used (phonopy convention, None where not applicable).  info: provenance dict.
    """

    mode: str
    short_range_fc: np.ndarray
    removed_fc: np.ndarray
    born: Born | None
    lam: float | None
    lo_projection: bool
    info: dict = field(default_factory=dict)
    _term: object = None  # callable (q_red (nq,3), q_dir | None) -> (nq, n, 3, n, 3)

    def long_range(self, q_red, q_direction=None) -> np.ndarray:
        """The term added to C(q): (nq, n, 3, n, 3) complex128 eV/Å²."""
        q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
        qd = check_q_direction(q_direction)
        n = self.short_range_fc.shape[0]
        if self._term is None:
            return np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
        return np.asarray(self._term(q, qd))

    def apply(self, cq, q_red, q_direction=None) -> np.ndarray:
        """C(q) of ``short_range_fc`` → total C(q). cq: (nq, n, 3, n, 3) complex; q_red (nq, 3) reduced;
        q_direction: Cartesian (3,) used at q = 0 (None: no non-analytic term, TO = LO as phonopy)."""
        cq = np.asarray(cq)
        q = np.asarray(q_red, dtype=np.float64).reshape(-1, 3)
        n = self.short_range_fc.shape[0]
        if cq.shape != (len(q), n, 3, n, 3):
            raise ValueError(f"cq has shape {cq.shape}, expected {(len(q), n, 3, n, 3)}")
        if self._term is None:
            check_q_direction(q_direction)
            return cq
        return cq + self.long_range(q, q_direction)


def _projected(term, Q, crystal):
    """q ↦ Q term(q) Qᵀ, made periodic in phonopy's C-type convention: the projector (uniform translations)
    refers to the shortest representative q' of q, so the projection is done there (averaged over zone-boundary
    ties) and carried to q with the phase exp(2πi G0·(τ_j − τ_i)), G0 = q − q'."""
    if Q is None:
        return term
    rec_t = np.linalg.inv(crystal.cell).T
    tau = crystal.positions

    def f(q, qd):
        q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
        reps, owner = bz_representatives(q, crystal.cell)
        c = np.asarray(term(reps, qd))
        nr, n = c.shape[0], c.shape[1]
        c = (Q @ c.reshape(nr, 3 * n, 3 * n) @ Q.T).reshape(c.shape)
        g0 = (q[owner] - reps) @ rec_t
        ph = np.exp(2j * np.pi * np.einsum("qc,ijc->qij", g0, tau[None, :, :] - tau[:, None, :]))
        c = c * ph[:, :, None, :, None]
        out = np.zeros((len(q),) + c.shape[1:], dtype=np.complex128)
        np.add.at(out, owner, c)
        return out / np.bincount(owner, minlength=len(q))[:, None, None, None, None]

    return f


def _kernel_term(kernel: DipoleKernel):
    return lambda q, qd: kernel(q, qd)


def make_correction(lr: str, born: Born | None, supercell: Supercell, fc, *, ewald_lambda: float | None = None,
                    leak_region=None, tolerance: float = 1e-12, lo_projection: bool = False,
                    gonze_full_ewald: bool = False, num_g_points: int = 300) -> Correction:
    """Build the Correction for mode ``lr`` (see module docstring).

    born: required for every mode except "none".  supercell: the force-constant supercell
    (:func:`phonjax.structure.make_supercell`).  fc: (n_prim, n_super, 3, 3) eV/Å².
    leak_region: "sphere:R" / "box:N N N" (ewald-leak only).  tolerance: Ewald truncation target.
    """
    if lr not in MODES:
        raise LongRangeModeError(f"unknown long-range mode {lr!r}; choose one of {', '.join(MODES)}")
    fc = np.asarray(fc, dtype=np.float64)
    prim = supercell.primitive
    n, ns = prim.n_atoms, supercell.crystal.n_atoms
    if fc.shape != (n, ns, 3, 3):
        raise ValueError(f"force constants have shape {fc.shape}, expected {(n, ns, 3, 3)}")
    if leak_region is not None and lr != "ewald-leak":
        raise LongRangeModeError(f"leak_region is only used by lr='ewald-leak', not {lr!r}")
    if lr == "none":
        return Correction("none", fc, np.zeros_like(fc), born, None, False, {"mode": "none"})
    if born is None:
        raise LongRangeModeError(f"lr={lr!r} needs Born charges and ε∞ (born=...)")
    if born.n_atoms != n:
        raise BornError(f"Born charges for {born.n_atoms} atoms, primitive cell has {n}")
    Q = acoustic_projector(prim.masses) if lo_projection else None
    removed = np.zeros_like(fc)
    info = {"mode": lr, "lo_projection": bool(lo_projection), "factor": born.factor,
            "neutrality_correction": born.neutrality_correction}
    lam = None

    if lr == "na":
        from phonjax.longrange.nac import na_term
        pref_vol = prim.volume
        rec_t = np.linalg.inv(prim.cell).T

        def term(q, qd):
            out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
            if qd is None:
                return out
            at_gamma = np.linalg.norm(q @ rec_t, axis=1) < Q_ZERO_TOL
            if np.any(at_gamma):
                out[at_gamma] = na_term(qd, born, pref_vol)
            return out

        return Correction(lr, fc, removed, born, None, lo_projection, info, _projected(term, Q, prim))

    if lr == "wang":
        from phonjax.longrange.nac import na_term
        images = ws_images(supercell)
        rec_t = np.linalg.inv(prim.cell).T

        def term(q, qd):
            out = np.zeros((len(q), n, 3, n, 3), dtype=np.complex128)
            W = ws_phase_sum(supercell, q, images=images)
            qc = q @ rec_t
            for k in range(len(q)):
                if np.linalg.norm(qc[k]) < Q_ZERO_TOL:
                    if qd is None:
                        continue
                    d = qd
                else:
                    d = qc[k]
                out[k] = na_term(d, born, prim.volume) * W[k][:, None, :, None]
            return out

        return Correction(lr, fc, removed, born, None, lo_projection, info, _projected(term, Q, prim))

    if lr in ("ewald", "ewald-leak"):
        params = ewald_parameters(prim, born, lam=ewald_lambda, tolerance=tolerance, with_real_space=True)
        kern = make_dipole_kernel(prim, born, params)
        lam = params.lam
        sr = fc
        if lr == "ewald-leak":
            if leak_region is None:
                raise LongRangeModeError("lr='ewald-leak' needs leak_region ('sphere:R' or 'box:N N N')")
            region = parse_leak_region(leak_region)
            info["leak_region"] = region
            if Q is not None:
                # projected leak removal must act in q-space: add Q (C_dd − C_leak) Qᵀ, keep fc as is
                pairs = leak_pairs(prim, born, region)
                term = _projected(lambda q, qd: kern(q, qd) - leak_q(q, prim, pairs), Q, prim)
                info.update(n_g=len(params.g_vectors), n_r=len(params.r_vectors), tolerance=tolerance)
                return Correction(lr, fc, removed, born, lam, lo_projection, info, term)
            removed = leak_fc(supercell, born, region)
            sr = fc - removed
        info.update(n_g=len(params.g_vectors), n_r=len(params.r_vectors), tolerance=tolerance)
        return Correction(lr, sr, removed, born, lam, lo_projection, info, _projected(_kernel_term(kern), Q, prim))

    if lr == "recip-auto":
        from phonjax.longrange.range_matched import fit_model_lambda
        if ewald_lambda is not None:
            raise LongRangeModeError("lr='recip-auto' chooses Λ itself from the force constants; "
                                     "drop ewald_lambda (or use lr='recip' for a fixed Λ)")
        fit = fit_model_lambda(fc, supercell, born)
        params = ewald_parameters(prim, born, lam=fit.lam, tolerance=tolerance, with_real_space=False)
        kern = make_dipole_kernel(prim, born, params)
        info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff, lambda_fit=fit.as_dict())
        return Correction(lr, fc, removed, born, params.lam, lo_projection, info, _projected(_kernel_term(kern), Q, prim))

    if lr == "recip":
        if ewald_lambda is None:
            params = phonopy_recip_parameters(prim, born, num_g_points=num_g_points)
        else:
            params = ewald_parameters(prim, born, lam=ewald_lambda, tolerance=tolerance, with_real_space=False)
        kern = make_dipole_kernel(prim, born, params)
        info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff)
        return Correction(lr, fc, removed, born, params.lam, lo_projection, info, _projected(_kernel_term(kern), Q, prim))

    # gonze
    if gonze_full_ewald:
        params = ewald_parameters(prim, born, lam=ewald_lambda, tolerance=tolerance, with_real_space=True)
    else:
        params = phonopy_recip_parameters(prim, born, num_g_points=num_g_points, lam=ewald_lambda)
    kern = make_dipole_kernel(prim, born, params)
    term = _projected(_kernel_term(kern), Q, prim)
    sr, removed = gonze_short_range_fc(fc, supercell, lambda q: term(q, None))
    info.update(n_g=len(params.g_vectors), g_cutoff=params.g_cutoff, full_ewald=bool(gonze_full_ewald))
    return Correction(lr, sr, removed, born, params.lam, lo_projection, info, term)
