"""Comparing phonon dispersions: error metrics (THz) between two dispersions.

A dispersion is a :class:`~phonjax.io.band_yaml.BandData` (band.yaml reading and writing:
:mod:`phonjax.io.band_yaml`), a band.yaml path, or anything with ``qpoints`` and ``frequencies`` (THz).
:func:`compare_bands` gives per-branch RMSE/MAE over the path, the maximum
error, and the optical frequencies at Γ (TO = lowest, LO = highest optical mode) with relative errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phonjax.io.band_yaml import BandData, read_band_yaml

from phonjax import units


class BandMismatchError(ValueError):
    """Two dispersions cannot be compared (different q-points or branch counts)."""


def _as_band(obj) -> BandData:
    if isinstance(obj, BandData):
        return obj
    if isinstance(obj, (str, Path)):
        return read_band_yaml(obj)
    if hasattr(obj, "frequencies") and hasattr(obj, "qpoints"):
        q = np.asarray(obj.qpoints).reshape(-1, 3)
        f = np.asarray(obj.frequencies).reshape(len(q), -1)
        return BandData(q, np.asarray(getattr(obj, "distances", np.arange(len(q))), dtype=float), f)
    arr = np.asarray(obj, dtype=np.float64)
    if arr.ndim != 2:
        raise BandMismatchError(f"frequencies must have shape (nq, nbranch), got {arr.shape}")
    return BandData(np.full((arr.shape[0], 3), np.nan), np.arange(arr.shape[0], dtype=float), arr)


@dataclass(frozen=True, eq=False)
class BandComparison:
    """Errors of a predicted dispersion against a reference (THz; relative errors dimensionless).

    rmse/mae per branch (nb,) after sorting frequencies at each q; totals over all q and branches;
    max_abs_error with its q index and branch; Γ optical modes: TO = lowest, LO = highest optical
    frequency averaged over the Γ points of the path (directions of approach differ), relative errors
    (pred − ref)/ref.
    """

    rmse_per_branch: np.ndarray
    mae_per_branch: np.ndarray
    rmse: float
    mae: float
    max_abs_error: float
    max_error_q_index: int
    max_error_branch: int
    n_qpoints: int
    gamma_to_pred: float | None
    gamma_to_ref: float | None
    gamma_lo_pred: float | None
    gamma_lo_ref: float | None
    max_freq_pred: float
    max_freq_ref: float

    @property
    def gamma_to_rel_error(self) -> float | None:
        if not self.gamma_to_ref:  # None, or a zero reference frequency (no relative error)
            return None
        return (self.gamma_to_pred - self.gamma_to_ref) / self.gamma_to_ref

    @property
    def gamma_lo_rel_error(self) -> float | None:
        if not self.gamma_lo_ref:  # None, or a zero reference frequency (no relative error)
            return None
        return (self.gamma_lo_pred - self.gamma_lo_ref) / self.gamma_lo_ref

    def as_dict(self) -> dict:
        return {"rmse_thz": self.rmse, "mae_thz": self.mae, "max_abs_error_thz": self.max_abs_error,
                "max_error_q_index": self.max_error_q_index, "max_error_branch": self.max_error_branch,
                "rmse_per_branch_thz": self.rmse_per_branch.tolist(),
                "mae_per_branch_thz": self.mae_per_branch.tolist(), "n_qpoints": self.n_qpoints,
                "gamma_to_pred_thz": self.gamma_to_pred, "gamma_to_ref_thz": self.gamma_to_ref,
                "gamma_lo_pred_thz": self.gamma_lo_pred, "gamma_lo_ref_thz": self.gamma_lo_ref,
                "gamma_to_rel_error": self.gamma_to_rel_error, "gamma_lo_rel_error": self.gamma_lo_rel_error,
                "max_freq_pred_thz": self.max_freq_pred, "max_freq_ref_thz": self.max_freq_ref}

    def summary(self) -> str:
        s = [f"RMSE {self.rmse:.3f} THz, MAE {self.mae:.3f} THz, max |error| {self.max_abs_error:.3f} THz "
             f"(q #{self.max_error_q_index}, branch {self.max_error_branch + 1}) over {self.n_qpoints} q",
             "per-branch RMSE (THz): " + " ".join(f"{x:.3f}" for x in self.rmse_per_branch)]
        if self.gamma_to_rel_error is not None and self.gamma_lo_rel_error is not None:
            s.append(f"Gamma TO {self.gamma_to_pred:.3f} vs {self.gamma_to_ref:.3f} THz "
                     f"({100 * self.gamma_to_rel_error:+.1f}%), LO {self.gamma_lo_pred:.3f} vs "
                     f"{self.gamma_lo_ref:.3f} THz ({100 * self.gamma_lo_rel_error:+.1f}%)")
        s.append(f"max frequency {self.max_freq_pred:.3f} vs {self.max_freq_ref:.3f} THz")
        return "\n".join(s)


def gamma_indices(qpoints: np.ndarray, tol: float = units.BAND_GAMMA_TOL) -> np.ndarray:
    """Indices of q-points equal to a reciprocal lattice vector (Γ)."""
    q = np.asarray(qpoints)
    return np.nonzero(np.all(np.abs(q - np.round(q)) < tol, axis=1))[0]


def _gamma_to_lo(freqs: np.ndarray, idx: np.ndarray, n_acoustic: int = 3):
    if len(idx) == 0 or freqs.shape[1] <= n_acoustic:
        return None, None
    opt = np.sort(freqs[idx], axis=1)[:, n_acoustic:]
    return float(opt[:, 0].mean()), float(opt[:, -1].mean())


def compare_bands(pred, ref, *, q_tol: float = 1e-5) -> BandComparison:
    """Error metrics of ``pred`` against ``ref``.

    pred/ref: a band.yaml path, a :class:`BandData`, an object with ``qpoints`` and ``frequencies``, or a
    (nq, nb) frequency array in THz (then the other one's q-points are assumed). The q-point lists must
    coincide (within ``q_tol``) when both are known, else BandMismatchError.
    """
    p, r = _as_band(pred), _as_band(ref)
    if p.frequencies.shape != r.frequencies.shape:
        raise BandMismatchError(f"frequency arrays differ in shape: {p.frequencies.shape} vs "
                                f"{r.frequencies.shape}")
    qp, qr = p.qpoints, r.qpoints
    known_p, known_r = np.all(np.isfinite(qp)), np.all(np.isfinite(qr))
    if known_p and known_r:
        bad = np.max(np.abs(qp - qr))
        if bad > q_tol:
            raise BandMismatchError(f"q-points differ (max |Δq| = {bad:.2e}): compute the prediction on the "
                                    "reference's q-points")
    q = qr if known_r else qp
    fp = np.sort(p.frequencies, axis=1)
    fr = np.sort(r.frequencies, axis=1)
    err = fp - fr
    rmse_b = np.sqrt(np.mean(err**2, axis=0))
    mae_b = np.mean(np.abs(err), axis=0)
    k = int(np.argmax(np.abs(err)))
    iq, ib = divmod(k, err.shape[1])
    to_p = to_r = lo_p = lo_r = None
    if np.all(np.isfinite(q)):
        g = gamma_indices(q)
        to_p, lo_p = _gamma_to_lo(fp, g)
        to_r, lo_r = _gamma_to_lo(fr, g)
    return BandComparison(rmse_per_branch=rmse_b, mae_per_branch=mae_b, rmse=float(np.sqrt(np.mean(err**2))),
                          mae=float(np.mean(np.abs(err))), max_abs_error=float(np.abs(err).max()),
                          max_error_q_index=int(iq), max_error_branch=int(ib), n_qpoints=int(len(fr)),
                          gamma_to_pred=to_p, gamma_to_ref=to_r, gamma_lo_pred=lo_p, gamma_lo_ref=lo_r,
                          max_freq_pred=float(fp.max()), max_freq_ref=float(fr.max()))
