"""Comparing phonon dispersions: phonopy-style band.yaml I/O and error metrics (THz).

A dispersion is a :class:`BandData`: q-points (nq, 3) in reduced coordinates of the primitive reciprocal
basis (no 2π), path distances (nq,) in 1/Å (no 2π, cumulative, not increased across a path break, as
phonopy), frequencies (nq, nbranch) THz sorted ascending at each q (imaginary as negative), and the path's
segment sizes and labels. :func:`compare_bands` gives per-branch RMSE/MAE over the path, the maximum
error, and the optical frequencies at Γ (TO = lowest, LO = highest optical mode) with relative errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from phonjax import units


class BandMismatchError(ValueError):
    """Two dispersions cannot be compared (different q-points or branch counts)."""


@dataclass(frozen=True, eq=False)
class BandData:
    """A dispersion along a path. Shapes: qpoints (nq,3), distances (nq,), frequencies (nq, nb) THz."""

    qpoints: np.ndarray
    distances: np.ndarray
    frequencies: np.ndarray
    segment_nqpoint: tuple[int, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    lattice: np.ndarray | None = None
    symbols: tuple[str, ...] = ()
    scaled_positions: np.ndarray | None = None
    masses: np.ndarray | None = None
    comment: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_branches(self) -> int:
        return int(self.frequencies.shape[1])


def _loader():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_band_yaml(path: str | Path) -> BandData:
    """Read a phonopy ``band.yaml`` (phonopy's own or written by :func:`write_band_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"band.yaml not found: {path}")
    try:
        d = yaml.load(path.read_text(), Loader=_loader())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(d, dict) or "phonon" not in d:
        raise ValueError(f"{path}: not a phonopy band.yaml (no 'phonon' list)")
    ph = d["phonon"]
    q = np.array([p["q-position"] for p in ph], dtype=np.float64)
    dist = np.array([p.get("distance", np.nan) for p in ph], dtype=np.float64)
    freqs = np.array([[b["frequency"] for b in p["band"]] for p in ph], dtype=np.float64)
    pts = d.get("points") or d.get("atoms") or []
    labels = tuple(tuple(x) for x in d.get("labels", []) or [])
    return BandData(
        qpoints=q, distances=dist, frequencies=freqs,
        segment_nqpoint=tuple(d.get("segment_nqpoint", []) or []), labels=labels,
        lattice=np.array(d["lattice"]) if "lattice" in d else None,
        symbols=tuple(p.get("symbol", "") for p in pts),
        scaled_positions=np.array([p["coordinates"] for p in pts]) if pts else None,
        masses=np.array([p.get("mass", np.nan) for p in pts]) if pts else None,
    )


def path_distances(qpoints: np.ndarray, lattice: np.ndarray, segment_nqpoint=()) -> np.ndarray:
    """Cumulative Cartesian |Δq| (1/Å, no 2π); no increment between segments (phonopy's convention)."""
    qc = np.asarray(qpoints) @ np.linalg.inv(np.asarray(lattice)).T
    steps = np.r_[0.0, np.linalg.norm(np.diff(qc, axis=0), axis=1)]
    if segment_nqpoint:
        starts = np.cumsum([0, *segment_nqpoint])[:-1]
        steps[starts] = 0.0
    return np.cumsum(steps)


def write_band_yaml(path: str | Path, band: BandData) -> None:
    """Write ``band`` in phonopy's band.yaml layout (frequencies only, no eigenvectors)."""
    lines = []
    nq = len(band.qpoints)
    lines.append(f"nqpoint: {nq}")
    if band.segment_nqpoint:
        lines.append(f"npath: {len(band.segment_nqpoint)}")
        lines.append("segment_nqpoint:")
        lines += [f"- {n}" for n in band.segment_nqpoint]
    if band.labels:
        lines.append("labels:")
        lines += [f"- [ '{a}', '{b}' ]" for a, b in band.labels]
    if band.lattice is not None:
        rec = np.linalg.inv(band.lattice)
        lines.append("reciprocal_lattice:")
        lines += [f"- [ {r[0]:19.15f}, {r[1]:19.15f}, {r[2]:19.15f} ] # {'abc'[i]}*"
                  for i, r in enumerate(rec.T)]
    if band.symbols:
        lines.append(f"natom: {len(band.symbols)}")
    if band.lattice is not None:
        lines.append("lattice:")
        lines += [f"- [ {r[0]:21.15f}, {r[1]:21.15f}, {r[2]:21.15f} ] # {'abc'[i]}"
                  for i, r in enumerate(band.lattice)]
    if band.symbols:
        lines.append("points:")
        for s, x, m in zip(band.symbols, band.scaled_positions, band.masses):
            lines.append(f"- symbol: {s} # ")
            lines.append(f"  coordinates: [ {x[0]:18.15f}, {x[1]:18.15f}, {x[2]:18.15f} ]")
            lines.append(f"  mass: {m:.6f}")
    if band.comment:
        lines += [f"# {ln}" for ln in band.comment.splitlines()]
    lines.append("")
    lines.append("phonon:")
    for iq in range(nq):
        q = band.qpoints[iq]
        lines.append(f"- q-position: [ {q[0]:12.7f}, {q[1]:12.7f}, {q[2]:12.7f} ]")
        lines.append(f"  distance: {band.distances[iq]:12.7f}")
        lines.append("  band:")
        for ib, f in enumerate(band.frequencies[iq]):
            lines.append(f"  - # {ib + 1}")
            lines.append(f"    frequency: {f:15.10f}")
        lines.append("")
    Path(path).write_text("\n".join(lines) + "\n")


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
