"""Shared pieces of the LiF accuracy / long-range benchmarks: the example inputs, the Γ directions of approach on
a reference path, frequencies of a :class:`~phonjax.force_constants.ForceConstants` on that path, and the error
metrics of issue 9 against DFPT.

Conventions: frequencies (nq, nb) THz, ascending per q, imaginary negative; q reduced (primitive reciprocal
basis, no 2π); directions Cartesian. The reference is a :class:`phonjax.io.band_yaml.BandData` (phonopy band.yaml).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "LiF"

#: Issue-9 targets.
TARGETS = {"rmse_thz": 0.15, "to_rel": 0.01, "lo_rel": 0.01, "n_imaginary": 0, "lambda_spread_thz": 0.01,
           "acoustic_thz": 0.05}
#: A mode counts as imaginary below −this (THz), as phonjax.predict.
IMAG_THZ = 0.01
#: "Near Γ": path points within this fraction of a segment's length from a Γ end of that segment.
NEAR_GAMMA_FRACTION = 0.2


def load_inputs(structure, born, reference):
    """(primitive Crystal, Born, reference BandData) from a structure file, a BORN file and a band.yaml."""
    import ase.io
    from phonjax.io.born import read_born
    from phonjax.io.band_yaml import read_band_yaml
    from phonjax.structure import Crystal

    prim = Crystal.from_ase(ase.io.read(str(structure)))
    return prim, read_born(born, prim), read_band_yaml(reference)


def segment_slices(ref) -> list[slice]:
    """Index ranges of the reference's path segments."""
    out, k = [], 0
    for m in ref.segment_nqpoint or (len(ref.qpoints),):
        out.append(slice(k, k + int(m)))
        k += int(m)
    return out


def is_gamma(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.all(np.abs(q - np.round(q)) < 1e-8, axis=-1)


def gamma_directions(ref, cell) -> np.ndarray:
    """(nq, 3) direction of approach at every Γ point of the path (towards the neighbouring point of the same
    segment, as phonopy and matdyn), in reduced coordinates of the reciprocal lattice (the engine's basis), scaled
    to unit Cartesian length; NaN elsewhere."""
    q = np.asarray(ref.qpoints, dtype=np.float64)
    rec_t = np.linalg.inv(np.asarray(cell)).T
    d = np.full((len(q), 3), np.nan)
    for s in segment_slices(ref):
        idx = np.arange(len(q))[s]
        for pos, k in enumerate(idx):
            if not is_gamma(q[k]):
                continue
            nb = idx[pos + 1] if pos + 1 < len(idx) else idx[pos - 1]
            v = q[nb] - q[k]
            d[k] = v / np.linalg.norm(v @ rec_t)
    return d


def near_gamma_mask(ref, fraction: float = NEAR_GAMMA_FRACTION) -> np.ndarray:
    """(nq,) True for path points whose distance from a Γ end of their segment is ≤ ``fraction`` of the
    segment's length (Γ itself included)."""
    q = np.asarray(ref.qpoints)
    x = np.asarray(ref.distances)
    m = np.zeros(len(q), dtype=bool)
    for s in segment_slices(ref):
        xs, qs = x[s], q[s]
        length = xs[-1] - xs[0]
        if length <= 0:
            continue
        if is_gamma(qs[0]):
            m[s] |= (xs - xs[0]) <= fraction * length + 1e-12
        if is_gamma(qs[-1]):
            m[s] |= (xs[-1] - xs) <= fraction * length + 1e-12
    return m


def path_frequencies(fc, ref, directions, **lr) -> np.ndarray:
    """Frequencies (nq, nb) THz of ``fc`` on the reference's q-points with a long-range mode (``lr=...``,
    ``ewald_lambda``, ``leak_region``, ...); Γ points use ``directions`` (see :func:`gamma_directions`)."""
    return np.asarray(fc.frequencies(np.asarray(ref.qpoints), q_direction=directions, **lr))


def accuracy_metrics(freqs, ref, *, near_gamma=None) -> dict:
    """Issue-9 metrics of ``freqs`` (nq, nb) THz against ``ref``: total and per-branch RMSE/MAE, max |error|,
    TO(Γ)/LO(Γ) (lowest/highest optical, averaged over the Γ points of the path) and relative errors, the
    acoustic error near Γ (max |Δ| of the 3 lowest branches on ``near_gamma`` points), imaginary modes, and the
    largest relative error of the highest branch on the first path segment when it starts at Γ (LO on Γ–X)."""
    from phonjax.compare import compare_bands

    f = np.sort(np.asarray(freqs, dtype=np.float64), axis=1)
    c = compare_bands(f, np.sort(ref.frequencies, axis=1))
    d = c.as_dict()
    g = np.flatnonzero(is_gamma(ref.qpoints))
    fr = np.sort(ref.frequencies, axis=1)
    to_p, lo_p = float(f[g, 3:].min(axis=1).mean()), float(f[g, 3:].max(axis=1).mean())
    to_r, lo_r = float(fr[g, 3:].min(axis=1).mean()), float(fr[g, 3:].max(axis=1).mean())
    mask = near_gamma_mask(ref) if near_gamma is None else near_gamma
    acoustic = float(np.abs(f[mask, :3] - fr[mask, :3]).max())
    neg = f < -IMAG_THZ
    seg = segment_slices(ref)[0]  # LO (highest branch) along the first segment when it starts at Γ (Γ–X)
    lo_gx = None
    if is_gamma(np.asarray(ref.qpoints)[seg.start]):
        lo_gx = float(np.max(np.abs(f[seg, -1] - fr[seg, -1]) / fr[seg, -1]))
    return {"rmse_thz": d["rmse_thz"], "mae_thz": d["mae_thz"], "max_abs_error_thz": d["max_abs_error_thz"],
            "rmse_per_branch_thz": d["rmse_per_branch_thz"], "mae_per_branch_thz": d["mae_per_branch_thz"],
            "to_pred_thz": to_p, "to_ref_thz": to_r, "lo_pred_thz": lo_p, "lo_ref_thz": lo_r,
            "to_rel": (to_p - to_r) / to_r, "lo_rel": (lo_p - lo_r) / lo_r, "acoustic_near_gamma_thz": acoustic,
            "n_imaginary_modes": int(neg.sum()), "n_imaginary_qpoints": int(neg.any(axis=1).sum()),
            "min_frequency_thz": float(f.min()), "lo_first_segment_max_rel": lo_gx}


def target_misses(m: dict, lambda_spread: float | None) -> dict:
    """{target: excess beyond it (0 when met)} for the metrics of :func:`accuracy_metrics`."""
    out = {"rmse_thz": max(0.0, m["rmse_thz"] - TARGETS["rmse_thz"]),
           "to_rel": max(0.0, abs(m["to_rel"]) - TARGETS["to_rel"]),
           "lo_rel": max(0.0, abs(m["lo_rel"]) - TARGETS["lo_rel"]),
           "n_imaginary": m["n_imaginary_modes"],
           "acoustic_thz": max(0.0, m["acoustic_near_gamma_thz"] - TARGETS["acoustic_thz"])}
    if lambda_spread is not None:
        out["lambda_spread_thz"] = max(0.0, lambda_spread - TARGETS["lambda_spread_thz"])
    return out
