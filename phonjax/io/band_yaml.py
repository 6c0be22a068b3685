"""phonopy's ``band.yaml``: the :class:`BandData` record, its reader and its one writer.

A dispersion is a :class:`BandData`: q-points (nq, 3) in reduced coordinates of the primitive reciprocal
basis (no 2π), path distances (nq,) in 1/Å (no 2π, cumulative, not increased across a path break, as
phonopy), frequencies (nq, nbranch) THz sorted ascending at each q (imaginary as negative), the path's
segment sizes and labels, and optionally the cell (lattice rows Å, symbols, reduced positions, masses amu).
:func:`band_data` turns a :class:`phonjax.bands.BandStructure` into one; :func:`write_band_yaml` writes either
in phonopy's layout (frequencies only, no eigenvectors), which :func:`read_band_yaml` and phonopy's yaml
loader read back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

__all__ = ["BandData", "band_data", "read_band_yaml", "write_band_yaml", "path_distances"]


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


def band_data(band, *, comment: str = "phonjax") -> BandData:
    """:class:`BandData` of a :class:`phonjax.bands.BandStructure` (its cell from ``band.primitive``); a
    BandData is returned unchanged."""
    if isinstance(band, BandData):
        return band
    p = band.primitive
    return BandData(np.asarray(band.qpoints), np.asarray(band.distances), np.asarray(band.frequencies),
                    tuple(int(x) for x in band.segment_nqpoint), tuple(tuple(x) for x in band.segment_labels),
                    None if p is None else p.cell, () if p is None else tuple(p.symbols),
                    None if p is None else p.scaled_positions, None if p is None else p.masses, comment)


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


def write_band_yaml(path: str | Path, band) -> Path:
    """Write ``band`` (a :class:`BandData` or a BandStructure) to ``path`` in phonopy's band.yaml layout
    (frequencies only, no eigenvectors); parent directories are created. Returns the path."""
    band = band_data(band)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
