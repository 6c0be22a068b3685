"""Band paths, band structures and phonon DOS (frozen results).

Paths: ``None`` → ASE's automatic high-symmetry path for the primitive cell's Bravais lattice (special
points given in the reduced basis of *this* cell's reciprocal lattice, no 2π, phonopy's convention); a string
of ASE special-point names ("GXKGL", breaks with ",": "GXU,KGL"); or explicit segments
``[[("Γ", q0), ("X", q1), ...], [...]]`` / ``[[q0, q1, ...], ...]`` (then ``labels`` lists the names).
Each pair of consecutive special points is one phonopy-style segment of ``npoints`` points including both
ends, or ``ceil(|Δq| · density) + 1`` points with ``density`` (points per 1/Å, no 2π).
Distances are cumulative |Δq_cart| (1/Å, no 2π) and do not jump across a path break, as phonopy's.
At Γ on a path the non-analytic direction is taken from the neighbouring path point (``q_directions``, in
reduced coordinates of the reciprocal lattice like q, scaled so that its Cartesian length is 1).
The long-range treatment is one :class:`~phonjax.longrange.LongRange` value (``longrange=``) or a prebuilt
:class:`~phonjax.longrange.correction.Correction` (``correction=``); frequencies come from
:func:`phonjax.dynmat.phonons`.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from phonjax import units
from phonjax.structure import Crystal

__all__ = ["BandStructure", "PhononDOS", "BandPathError", "band_path", "band_structure", "phonon_dos",
           "pretty_label"]


class BandPathError(ValueError):
    """A band path cannot be built (unknown label, bad segment, bad density)."""


def pretty_label(s: str) -> str:
    s = str(s)
    return {"G": "Γ", "GAMMA": "Γ", "Gamma": "Γ", "\\Gamma": "Γ", "$\\Gamma$": "Γ"}.get(s, s)


@dataclass(frozen=True, eq=False)
class BandStructure:
    """A dispersion along a path.

    qpoints (nq, 3) reduced; distances (nq,) 1/Å (no 2π); frequencies (nq, 3n) in ``unit`` (ascending, imaginary
    negative); eigenvectors (nq, 3n, 3n) columns = modes, or None; labels / label_positions: special points and
    their distances (a break shows as "X|K"); segment_nqpoint / segment_labels: phonopy's segments;
    q_directions (nq, 3) reduced direction used at Γ points (NaN elsewhere); lr: long-range mode used.
    """

    qpoints: np.ndarray
    distances: np.ndarray
    frequencies: np.ndarray
    eigenvectors: np.ndarray | None
    labels: tuple[str, ...]
    label_positions: tuple[float, ...]
    segment_nqpoint: tuple[int, ...]
    segment_labels: tuple[tuple[str, str], ...]
    q_directions: np.ndarray | None = None
    unit: str = "THz"
    lr: str = "none"
    primitive: Crystal | None = None

    @property
    def n_branches(self) -> int:
        return int(self.frequencies.shape[1])

    def to_band_data(self):
        """As :class:`phonjax.io.band_yaml.BandData` (for :func:`phonjax.compare.compare_bands`)."""
        from phonjax.io.band_yaml import band_data
        return band_data(self)

    def write_yaml(self, path):
        """phonopy-style band.yaml (:func:`phonjax.io.band_yaml.write_band_yaml`)."""
        from phonjax.io.band_yaml import write_band_yaml
        return write_band_yaml(path, self)

    def plot(self, path=None, *, reference=None, **kw):
        """Matplotlib figure (saved to ``path`` when given); see :func:`phonjax.plot.plot_band_structure`."""
        from phonjax.plot import plot_band_structure
        return plot_band_structure(self, path, reference=reference, **kw)


@dataclass(frozen=True, eq=False)
class PhononDOS:
    """frequencies (nf,) THz grid; dos (nf,) states/THz per primitive cell (integrates to 3n); mesh; sigma THz."""

    frequencies: np.ndarray
    dos: np.ndarray
    mesh: tuple[int, int, int]
    sigma: float


def _special_points(crystal: Crystal) -> tuple[str, dict]:
    bp = crystal.to_ase().cell.bandpath(npoints=0)
    return bp.path, {k: np.asarray(v, dtype=np.float64) for k, v in bp.special_points.items()}


def _parse_string_path(path: str, special: dict) -> list[list[tuple[str, np.ndarray]]]:
    from ase.dft.kpoints import parse_path_string
    segs = []
    for seg in parse_path_string(path):
        pts = []
        for name in seg:
            if name not in special:
                raise BandPathError(f"unknown special point {name!r}; this lattice has {', '.join(special)}")
            pts.append((pretty_label(name), special[name]))
        if len(pts) < 2:
            raise BandPathError(f"path segment {''.join(seg)!r} needs at least two points")
        segs.append(pts)
    return segs


def _explicit_path(path, labels) -> list[list[tuple[str, np.ndarray]]]:
    segs = []
    flat_labels = list(labels) if labels is not None else None
    k = 0
    for seg in path:
        pts = []
        for p in seg:
            if isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str):
                name, q = pretty_label(p[0]), np.asarray(p[1], dtype=np.float64)
            else:
                q = np.asarray(p, dtype=np.float64)
                name = pretty_label(flat_labels[k]) if flat_labels is not None and k < len(flat_labels) else ""
            if q.shape != (3,) or not np.all(np.isfinite(q)):
                raise BandPathError(f"a path point must be 3 finite reduced coordinates, got {p!r}")
            pts.append((name, q))
            k += 1
        if len(pts) < 2:
            raise BandPathError("every path segment needs at least two points")
        segs.append(pts)
    if not segs:
        raise BandPathError("empty band path")
    return segs


def _shared_counts(lengths: np.ndarray, total: int) -> np.ndarray:
    """Points per segment (≥ 2 each, both ends included) summing to ``total``, in proportion to the lengths."""
    if int(total) != total or total < 2 * len(lengths):
        raise BandPathError(f"total={total} is too few for {len(lengths)} path segments (need ≥ 2 each)")
    counts = np.maximum(2, np.round(total * lengths / lengths.sum()).astype(int))
    while counts.sum() > total:  # remove points from the longest segments first, keeping ≥ 2 each
        counts[np.argmax(np.where(counts > 2, counts, -1))] -= 1
    counts[np.argmax(counts)] += total - counts.sum()
    return counts


def band_path(crystal, path=None, *, npoints: int = 51, density: float | None = None, labels=None,
              total: int | None = None) -> dict:
    """Sampled path: dict(qpoints, distances, labels, label_positions, segment_nqpoint, segment_labels,
    q_directions (reduced, NaN except at Γ)). Points per segment: ``npoints``, or from ``density``, or
    ``total`` points over the whole path shared in proportion to the segment lengths (as matdyn inputs are
    laid out by :func:`phonjax.dataset.dfpt.run_dfpt`)."""
    cr = Crystal.coerce(crystal)
    if path is None or isinstance(path, str):
        default, special = _special_points(cr)
        segs = _parse_string_path(default if path is None else path, special)
    else:
        segs = _explicit_path(path, labels)
    if density is None and (int(npoints) != npoints or npoints < 2):
        raise BandPathError(f"npoints must be an integer ≥ 2, got {npoints}")
    if density is not None and not density > 0:
        raise BandPathError(f"density must be positive, got {density}")
    rec_t = np.linalg.inv(cr.cell).T  # q_cart = q_red @ rec_t
    pairs = [(seg[k], seg[k + 1]) for seg in segs for k in range(len(seg) - 1)]
    lengths = np.array([float(np.linalg.norm((b[1] - a[1]) @ rec_t)) for a, b in pairs])
    shared = None if total is None else iter(_shared_counts(lengths, total))
    length_of = iter(lengths)
    qs, dist, nseg, seglab, lab, labpos, dirs = [], [], [], [], [], [], []
    d0 = 0.0
    for si, seg in enumerate(segs):
        for k in range(len(seg) - 1):
            (n1, q1), (n2, q2) = seg[k], seg[k + 1]
            length = next(length_of)
            if shared is not None:
                m = int(next(shared))
            else:
                m = int(npoints) if density is None else max(2, int(math.ceil(length * density)) + 1)
            t = np.linspace(0.0, 1.0, m)
            q = q1[None] + t[:, None] * (q2 - q1)[None]
            qc = q @ rec_t
            dd = d0 + np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(qc, axis=0), axis=1))])
            dv = np.full((m, 3), np.nan)
            for j in (0, m - 1):
                if np.linalg.norm(qc[j]) < units.GAMMA_Q_TOL and m > 1:
                    nb = 1 if j == 0 else m - 2
                    if np.linalg.norm(qc[nb]) > 0:
                        dv[j] = q[nb] / np.linalg.norm(qc[nb])
            qs.append(q), dist.append(dd), dirs.append(dv)
            nseg.append(m), seglab.append((n1, n2))
            if k == 0:
                if si > 0 and lab:
                    lab[-1] = f"{lab[-1]}|{n1}" if lab[-1] != n1 else n1
                else:
                    lab.append(n1), labpos.append(d0)
            lab.append(n2), labpos.append(float(dd[-1]))
            d0 = float(dd[-1])
    return {"qpoints": np.concatenate(qs), "distances": np.concatenate(dist), "labels": tuple(lab),
            "label_positions": tuple(labpos), "segment_nqpoint": tuple(nseg), "segment_labels": tuple(seglab),
            "q_directions": np.concatenate(dirs)}


def _correction(fcobj, longrange, correction):
    """(correction, mode name): a prebuilt correction as given (it is longrange's when both are given), else the
    one of the LongRange spec (default: LongRange(), i.e. auto)."""
    if correction is not None:
        return correction, correction.mode
    from phonjax.longrange.spec import LongRange
    spec = (LongRange() if longrange is None else longrange).resolved(fcobj)
    return spec.correction(fcobj), spec.mode


def band_structure(fcobj, path=None, *, npoints: int = 51, density: float | None = None, labels=None,
                   longrange=None, correction=None, asr: bool | None = None, with_eigenvectors: bool = False,
                   unit: str = "THz") -> BandStructure:
    """Dispersion of a :class:`~phonjax.force_constants.ForceConstants` along a path (see module docstring).
    longrange: :class:`~phonjax.longrange.LongRange` (None: ``LongRange()``, i.e. ``auto``) or correction: a
    prebuilt Correction (None with ``longrange=None`` means auto)."""
    from phonjax.dynmat import phonons

    bp = band_path(fcobj.primitive, path, npoints=npoints, density=density, labels=labels)
    corr, mode = _correction(fcobj, longrange, correction)
    res = phonons(fcobj, bp["qpoints"], corr, q_direction=bp["q_directions"], asr=asr,
                  return_eigenvectors=with_eigenvectors, unit=unit)
    f, v = (res if with_eigenvectors else (res, None))
    return BandStructure(bp["qpoints"], bp["distances"], f, v, bp["labels"], bp["label_positions"],
                         bp["segment_nqpoint"], bp["segment_labels"], bp["q_directions"], unit, mode,
                         fcobj.primitive)


def phonon_dos(fcobj, mesh=(16, 16, 16), *, sigma: float | None = None, n_points: int = 501, longrange=None,
               correction=None, asr: bool | None = None) -> PhononDOS:
    """Gaussian-smeared DOS on a Γ-centred mesh (THz). sigma default: (f_max − f_min) / 100. longrange /
    correction as :func:`band_structure`."""
    from phonjax.dynmat import phonons

    mesh = tuple(int(x) for x in np.broadcast_to(np.asarray(mesh), (3,)))
    if min(mesh) < 1:
        raise BandPathError(f"mesh must be positive integers, got {mesh}")
    grid = np.stack(np.meshgrid(*[np.arange(m) / m for m in mesh], indexing="ij"), -1).reshape(-1, 3)
    grid -= np.round(grid)
    f = phonons(fcobj, grid, _correction(fcobj, longrange, correction)[0], asr=asr)
    fmin, fmax = float(f.min()), float(f.max())
    s = (fmax - fmin) / 100 if sigma is None else float(sigma)
    if not s > 0:
        raise BandPathError(f"sigma must be positive, got {s}")
    x = np.linspace(fmin - 5 * s, fmax + 5 * s, n_points)
    dos = np.zeros_like(x)
    for chunk in np.array_split(f.ravel(), max(1, f.size // 20000)):
        dos += np.exp(-0.5 * ((x[:, None] - chunk[None]) / s) ** 2).sum(1)
    dos /= len(grid) * s * math.sqrt(2 * math.pi)
    return PhononDOS(x, dos, mesh, s)
