"""Harmonic thermal properties from phonon frequencies on a q-mesh: Helmholtz free energy, entropy, heat
capacity at constant volume (the quantities phonopy's ``run_thermal_properties`` reports, in its units).

Per mode of frequency ν (THz) at temperature T, with x = hν/k_BT:
    F = hν/2 + k_BT ln(1 − e^{−x}),   S = k_B [x/(e^x − 1) − ln(1 − e^{−x})],   C_V = k_B x² e^x/(e^x − 1)²,
summed over modes and averaged over q with the mesh weights: values per primitive cell, per mole of cells.
Modes at or below ``cutoff`` (THz; imaginary ones are negative) are left out, as phonopy does; how many were
is part of the result so that a user sees it. The default cutoff is 1e-3 THz, not phonopy's 0: the acoustic
modes at Γ come out of any eigensolver as ±1e-8 THz noise, and a positive one adds k_B(1 − ln x) → a
noise-dependent entropy (phonopy with cutoff 0 on its NaCl example: 0.01 J/(K·mol) at 10 K). Units: F kJ/mol, S and C_V J/(K·mol), T K.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import units
from .qmesh import MESH_LENGTH, default_mesh, irreducible_mesh, mesh_qpoints, time_reversal_mesh  # noqa: F401


@dataclass(frozen=True)
class ThermalProperties:
    """temperatures (nT,) K; free_energy (nT,) kJ/mol (zero-point energy included); entropy, heat_capacity
    (nT,) J/(K·mol); zero_point_energy kJ/mol; per primitive cell. n_excluded: modes ≤ cutoff (incl. the
    three acoustic ones at Γ) left out of the sums; mesh: the q-mesh, or None for explicit q-points."""

    temperatures: np.ndarray
    free_energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray
    zero_point_energy: float
    n_excluded: int
    mesh: tuple[int, int, int] | None = None

    def at(self, temperature: float) -> dict:
        """{'T', 'F', 'S', 'Cv'} at one of the computed temperatures (K; kJ/mol, J/(K·mol))."""
        i = int(np.argmin(np.abs(self.temperatures - temperature)))
        if abs(self.temperatures[i] - temperature) > 1e-9:
            raise ValueError(f"T = {temperature} K was not computed (have {self.temperatures.min()}–"
                             f"{self.temperatures.max()} K)")
        return {"T": float(self.temperatures[i]), "F": float(self.free_energy[i]), "S": float(self.entropy[i]),
                "Cv": float(self.heat_capacity[i])}


def thermal_properties(frequencies, temperatures, weights=None, *, cutoff: float = 1e-3,
                       mesh=None) -> ThermalProperties:
    """Thermal properties from ``frequencies`` (nq, nmodes) THz with q-weights (nq,) (default equal) at
    ``temperatures`` (nT,) K ≥ 0. T = 0 gives F = zero-point energy and S = C_V = 0."""
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"frequencies must be (nq, nmodes), got shape {f.shape}")
    t = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("temperatures must be finite and ≥ 0 K")
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(f),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be (nq,) non-negative with a positive sum")
    keep = f > cutoff
    e = np.where(keep, f, 0.0) * units.THZ_TO_MEV * 1e-3                  # hν in eV; excluded modes → 0
    wq = w[:, None] * keep / w.sum()                                         # per-mode weight, 0 if excluded
    zpe = float(np.sum(wq * e / 2))
    kb = units.KB_EV_K
    fe, s, cv = np.full(len(t), zpe), np.zeros(len(t)), np.zeros(len(t))
    for i, temp in enumerate(t):
        if temp == 0:
            continue
        x = np.where(keep, e / (kb * temp), 1.0)
        with np.errstate(over="ignore"):
            em1 = np.expm1(x)                                                # e^x − 1 (inf for x ≫ 1)
            ln = np.log1p(-np.exp(-x))                                       # ln(1 − e^{−x})
            cv_mode = np.where(np.isinf(em1), 0.0, x * x * (em1 + 1) / np.where(np.isinf(em1), 1.0, em1) ** 2)
        fe[i] = zpe + np.sum(wq * kb * temp * ln)
        s[i] = np.sum(wq * kb * (x / em1 - ln))
        cv[i] = np.sum(wq * kb * cv_mode)
    to_kj = units.EV_TO_KJ_MOL
    return ThermalProperties(temperatures=t, free_energy=fe * to_kj, entropy=s * to_kj * 1000,
                             heat_capacity=cv * to_kj * 1000, zero_point_energy=zpe * to_kj,
                             n_excluded=int(np.sum(~keep)),
                             mesh=None if mesh is None else tuple(int(m) for m in mesh))


DEFAULT_TEMPERATURES = np.arange(0.0, 1001.0, 10.0)


def mesh_thermal(fc, correction=None, mesh=None, temperatures=DEFAULT_TEMPERATURES, *,
                 cutoff: float = 1e-3, symmetry: bool = True, symprec: float = 1e-5) -> ThermalProperties:
    """Thermal properties of force constants ``fc`` (:class:`~phonjax.force_constants.ForceConstants`) on a
    Γ-centred ``mesh`` (default :func:`~phonjax.qmesh.default_mesh` of the primitive cell) with a prebuilt
    long-range ``correction`` (the one the bands use; None: none). Γ is taken without a direction of approach
    (no non-analytic term, as phonopy's mesh). The mesh is reduced by the primitive cell's point group and time
    reversal (``symmetry``, as phonopy's ``run_mesh``; :func:`~phonjax.qmesh.irreducible_mesh`), or by time
    reversal alone (``symmetry=False``: force constants without the crystal's symmetry)."""
    from phonjax.dynmat import phonons

    mesh = default_mesh(fc.primitive) if mesh is None else tuple(int(m) for m in np.broadcast_to(mesh, (3,)))
    q, w = irreducible_mesh(mesh, fc.primitive, symprec) if symmetry else time_reversal_mesh(mesh)
    return thermal_properties(phonons(fc, q, correction), temperatures, w, cutoff=cutoff, mesh=mesh)


def thermal_summary(tp: ThermalProperties, temperature: float = 300.0) -> dict:
    """Compact table for summary.json: values at ``temperature`` (when computed) and the arrays; units in keys."""
    d = {"mesh": None if tp.mesh is None else list(tp.mesh), "n_excluded_modes": tp.n_excluded,
         "zero_point_energy_kJ_mol": tp.zero_point_energy, "units": {"T": "K", "F": "kJ/mol", "S": "J/(K·mol)",
                                                                      "Cv": "J/(K·mol)", "per": "primitive cell"}}
    if np.any(np.abs(tp.temperatures - temperature) < 1e-9):
        d[f"at_{temperature:g}K"] = tp.at(temperature)
    d.update({"T": tp.temperatures.tolist(), "F": [round(float(x), 6) for x in tp.free_energy],
              "S": [round(float(x), 6) for x in tp.entropy], "Cv": [round(float(x), 6) for x in tp.heat_capacity]})
    return d
