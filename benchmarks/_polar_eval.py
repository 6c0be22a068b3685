"""Metrics of one dispersion against the DFPT reference, for benchmarks/polar_benchmark.py (issue 20 deliver 3):
full-path RMSE/MAE, TO/LO(Γ) per direction of approach (each Γ-ended segment of the reference path), the LO
window metrics of :mod:`phonjax.polar_metrics` (15 % of the way from Γ to the zone boundary: largest LO error,
rises of LO above its Γ value = monotonicity violations, LO shape error), the acoustic error near Γ, ω_max, and
thermal quantities at 300 K on a q-mesh and on DFPT's own q-grid.

Conventions: frequencies (nq, nb) THz ascending; q reduced; thermal F kJ/mol, S and C_V J/(K·mol) per cell.
"""
from __future__ import annotations

import numpy as np

from _lif import accuracy_metrics, near_gamma_mask

#: The window of the near-Γ metrics (fraction of a Γ-ended segment).
WINDOW = 0.15
#: Temperature of the thermal comparison (K).
T_REPORT = 300.0


def path_metrics(freqs, ref) -> dict:
    """Every path metric of ``freqs`` (nq, nb) against ``ref`` (BandData)."""
    from phonjax.polar_metrics import near_gamma_metrics, summarize

    f = np.sort(np.asarray(freqs, dtype=np.float64), axis=1)
    fr = np.sort(ref.frequencies, axis=1)
    a = accuracy_metrics(f, ref, near_gamma=near_gamma_mask(ref, WINDOW))
    segs = near_gamma_metrics(ref.qpoints, ref.distances, f, fr, ref.segment_nqpoint, ref.labels, fraction=WINDOW)
    per_dir = []
    for s in segs:
        lab = "–".join(s.labels) if s.gamma_at_start else "–".join(s.labels[::-1])
        per_dir.append({"segment": lab, "to_pred_thz": s.to_gamma[0], "to_ref_thz": s.to_gamma[1],
                        "lo_pred_thz": s.lo_gamma[0], "lo_ref_thz": s.lo_gamma[1],
                        "to_rel": (s.to_gamma[0] - s.to_gamma[1]) / s.to_gamma[1],
                        "lo_rel": (s.lo_gamma[0] - s.lo_gamma[1]) / s.lo_gamma[1],
                        "lo_shape_error_thz": s.lo_shape_error, "to_shape_error_thz": s.to_shape_error,
                        "lo_max_error_thz": s.lo_max_error,
                        "lo_rises": s.lo_rises[0], "lo_rises_ref": s.lo_rises[1],
                        "lo_rise_height_thz": s.lo_rise_height[0], "lo_rise_height_ref_thz": s.lo_rise_height[1]})
    summ = summarize(segs)
    worst = max(per_dir, key=lambda d: abs(d["lo_rel"])) if per_dir else {}
    return {"rmse_thz": a["rmse_thz"], "mae_thz": a["mae_thz"], "max_abs_error_thz": a["max_abs_error_thz"],
            "to_rel": a["to_rel"], "lo_rel": a["lo_rel"], "to_pred_thz": a["to_pred_thz"],
            "to_ref_thz": a["to_ref_thz"], "lo_pred_thz": a["lo_pred_thz"], "lo_ref_thz": a["lo_ref_thz"],
            "lo_rel_worst_direction": worst.get("lo_rel"),
            "to_rel_worst_direction": max((d["to_rel"] for d in per_dir), key=abs, default=None),
            "lo_window_max_error_thz": summ.get("lo_max_error_thz"),
            "lo_window_max_rel_error": summ.get("lo_max_rel_error"),
            "lo_rises": summ.get("lo_rises_pred"), "lo_rises_ref": summ.get("lo_rises_ref"),
            "lo_rise_height_thz": summ.get("lo_rise_height_pred_thz"),
            "lo_rise_height_ref_thz": summ.get("lo_rise_height_ref_thz"),
            "lo_shape_error_thz": summ.get("lo_shape_error_thz"),
            "to_shape_error_thz": summ.get("to_shape_error_thz"),
            "acoustic_near_gamma_thz": a["acoustic_near_gamma_thz"],
            "omega_max_thz": float(f.max()), "omega_max_ref_thz": float(fr.max()),
            "n_imaginary_modes": a["n_imaginary_modes"], "per_direction": per_dir}


def thermal_at(freqs, temperature: float = T_REPORT) -> dict:
    """{'F', 'S', 'Cv'} at ``temperature`` from frequencies (nq, nb) THz with equal q weights."""
    from phonjax.thermal import thermal_properties

    tp = thermal_properties(np.asarray(freqs), [temperature])
    return {"F_kJ_mol": float(tp.free_energy[0]), "S_J_K_mol": float(tp.entropy[0]),
            "Cv_J_K_mol": float(tp.heat_capacity[0]), "n_excluded": tp.n_excluded}


def thermal_errors(mine: dict, ref: dict) -> dict:
    """Differences mine − ref of F (kJ/mol), S and C_V (J/(K·mol))."""
    return {f"d{k}": mine[k] - ref[k] for k in ("F_kJ_mol", "S_J_K_mol", "Cv_J_K_mol")}


def evaluate(freq_fn, ref, dirs, mesh_q, grid_q, dfpt_grid_thermal, dfpt_mesh_thermal=None) -> dict:
    """Metrics of one method. ``freq_fn(q, directions)`` → (nq, nb) THz (directions per q or None);
    ``mesh_q``: thermal mesh, ``dfpt_mesh_thermal``: DFPT's thermal there (matdyn; None: not available);
    ``grid_q``: DFPT's q-grid, ``dfpt_grid_thermal``: DFPT's thermal there."""
    import time

    t = time.perf_counter()
    f = freq_fn(np.asarray(ref.qpoints), dirs)
    res = {"freqs": np.asarray(f), "metrics": path_metrics(f, ref), "path_time_s": time.perf_counter() - t}
    t = time.perf_counter()
    res["thermal_mesh"] = thermal_at(freq_fn(mesh_q, None))
    res["thermal_grid"] = thermal_at(freq_fn(grid_q, None))
    res["thermal_time_s"] = time.perf_counter() - t
    if dfpt_grid_thermal is not None:
        res["thermal_grid_error"] = thermal_errors(res["thermal_grid"], dfpt_grid_thermal)
    if dfpt_mesh_thermal is not None:
        res["thermal_mesh_error"] = thermal_errors(res["thermal_mesh"], dfpt_mesh_thermal)
    return res
