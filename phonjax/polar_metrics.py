"""Metrics of a polar crystal's dispersion near Γ against a reference on the same path: what the LO–TO
physics gets right or wrong, beyond a path-averaged RMSE.

For every path segment that starts or ends at Γ, the *window* is the part within ``fraction`` (default 15 %)
of the segment's length from Γ. In it:

- ``lo_shape_error``: max |(LO(q) − LO(Γ))_pred − (LO(q) − LO(Γ))_ref|: the LO branch measured from its own Γ
  value, so a model that shifts the whole branch is not penalised here, a correction that bends it is;
- ``to_shape_error``: the same for every optical branch below LO (max over them): the model's own dispersion
  near Γ, which a long-range correction acting on the longitudinal polar mode leaves (nearly) alone — in a
  two-atom cubic crystal along a high-symmetry direction the transverse branches are untouched by it exactly —
  so an LO shape error no larger than it is the model's, not the correction's;
- ``lo_max_error``: max |LO_pred − LO_ref| (THz) and relative to LO_ref;
- ``lo_rises``: moving away from Γ, the steps where LO rises by more than ``rise_tol`` (count) and the largest
  height of LO above its Γ value (THz), for prediction and reference (a reference may rise too);
- ``acoustic_rmse``: RMSE of the three lowest branches;
- Γ values per segment (TO = lowest, LO = highest optical frequency at the Γ end, whose approach direction is
  the segment's: a uniaxial crystal's LO differs between directions).

LO is the highest branch (the polar LO mode in the crystals of the benchmark); frequencies are sorted per q.
Frequencies THz; q-points in reduced coordinates; both dispersions on the same q-points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAMMA_TOL = 1e-8


@dataclass(frozen=True)
class SegmentMetrics:
    """One Γ-ended segment (labels as in band.yaml; ``gamma_at_start``), THz unless noted."""

    labels: tuple[str, str]
    gamma_at_start: bool
    n_window: int
    to_gamma: tuple[float, float]          # (pred, ref)
    lo_gamma: tuple[float, float]
    lo_shape_error: float
    to_shape_error: float
    lo_max_error: float
    lo_max_rel_error: float
    lo_rises: tuple[int, int]              # (pred, ref) count of rising steps
    lo_rise_height: tuple[float, float]    # (pred, ref) max LO(q) − LO(Γ) in the window (≥ 0)
    acoustic_rmse: float

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _segments(n_q: int, segment_nqpoint) -> list[slice]:
    seg = list(segment_nqpoint) or [n_q]
    if sum(seg) != n_q:
        raise ValueError(f"segment_nqpoint sums to {sum(seg)}, the path has {n_q} q-points")
    out, start = [], 0
    for n in seg:
        out.append(slice(start, start + n))
        start += n
    return out


def _is_gamma(q) -> bool:
    return bool(np.all(np.abs(q - np.round(q)) < GAMMA_TOL))


def near_gamma_metrics(qpoints, distances, pred, ref, segment_nqpoint=(), labels=(), *, fraction: float = 0.15,
                       rise_tol: float = 1e-3, n_acoustic: int = 3) -> list[SegmentMetrics]:
    """SegmentMetrics for every segment with a Γ end. pred, ref: (nq, nb) THz on ``qpoints`` (nq, 3)."""
    q = np.asarray(qpoints, dtype=np.float64)
    d = np.asarray(distances, dtype=np.float64)
    fp, fr = np.sort(np.asarray(pred, float), axis=1), np.sort(np.asarray(ref, float), axis=1)
    if fp.shape != fr.shape or fp.shape[0] != len(q):
        raise ValueError(f"pred {fp.shape} and ref {fr.shape} must both be (nq={len(q)}, nb)")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    out = []
    for k, sl in enumerate(_segments(len(q), segment_nqpoint)):
        idx = np.arange(sl.start, sl.stop)
        for at_start in (True, False):
            g = idx[0] if at_start else idx[-1]
            if not _is_gamma(q[g]) or len(idx) < 2:
                continue
            order = idx if at_start else idx[::-1]                       # walking away from Γ
            s = np.abs(d[order] - d[g])
            win = order[s <= fraction * s.max() + 1e-12]
            lo_p, lo_r = fp[win, -1], fr[win, -1]
            shape = (lo_p - lo_p[0]) - (lo_r - lo_r[0])
            op, orf = fp[win, n_acoustic:-1], fr[win, n_acoustic:-1]
            to_shape = (op - op[0]) - (orf - orf[0])
            err = lo_p - lo_r
            lab = tuple(labels[k]) if k < len(labels) else ("", "")
            out.append(SegmentMetrics(
                labels=lab, gamma_at_start=at_start, n_window=len(win),
                to_gamma=(float(fp[g, n_acoustic]), float(fr[g, n_acoustic])),
                lo_gamma=(float(fp[g, -1]), float(fr[g, -1])),
                lo_shape_error=float(np.abs(shape).max()),
                to_shape_error=float(np.abs(to_shape).max()) if to_shape.size else 0.0,
                lo_max_error=float(np.abs(err).max()),
                lo_max_rel_error=float(np.abs(err / lo_r).max()),
                lo_rises=(int(np.sum(np.diff(lo_p) > rise_tol)), int(np.sum(np.diff(lo_r) > rise_tol))),
                lo_rise_height=(float(max(0.0, (lo_p - lo_p[0]).max())), float(max(0.0, (lo_r - lo_r[0]).max()))),
                acoustic_rmse=float(np.sqrt(np.mean((fp[win, :n_acoustic] - fr[win, :n_acoustic]) ** 2)))))
    return out


def summarize(segments: list[SegmentMetrics]) -> dict:
    """Worst case over the Γ segments (what a benchmark table reports)."""
    if not segments:
        return {}
    return {"lo_shape_error_thz": max(s.lo_shape_error for s in segments),
            "to_shape_error_thz": max(s.to_shape_error for s in segments),
            "lo_max_error_thz": max(s.lo_max_error for s in segments),
            "lo_max_rel_error": max(s.lo_max_rel_error for s in segments),
            "lo_rises_pred": sum(s.lo_rises[0] for s in segments),
            "lo_rises_ref": sum(s.lo_rises[1] for s in segments),
            "lo_rise_height_pred_thz": max(s.lo_rise_height[0] for s in segments),
            "lo_rise_height_ref_thz": max(s.lo_rise_height[1] for s in segments),
            "acoustic_rmse_near_gamma_thz": max(s.acoustic_rmse for s in segments),
            "n_gamma_segments": len(segments)}
