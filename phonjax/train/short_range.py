"""Finetuning a short-range model: datasets with the harmonic dipole–dipole part removed (``data.short_range``).

Physics in :mod:`phonjax.longrange.dipole_labels`; here it is applied to training data:

* :func:`load_short_range` — the config's reference primitive cell + Born file → :class:`ShortRangeSetup`;
* :func:`dipole_parts` — E_dd, F_dd, σ_dd of every frame (cached on disk, keyed by geometry and settings);
* :func:`subtract` / :func:`add_back` — labels minus / plus the dipole part (``add_back(subtract(d)) == d``);
* :func:`subtract_fc_reference` — force-constant reference rows minus the Ewald Φ_dd of their supercell;
* :func:`model_record` / :func:`write_model_born` — what the exported model directory records
  (``metadata.json["long_range"]`` and a copy of the Born file as ``model_dir/BORN``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import hashlib
import os
from pathlib import Path
import shutil
import time
from typing import Callable

import numpy as np

from phonjax.born import Born
from phonjax.io.born import read_born
from phonjax.longrange.dipole_labels import DipoleLabels, dipole_fc_in_cell, dipole_labels, long_range_record
from phonjax.structure import Crystal, supercell_matrix
from phonjax.train.data import Dataset, DatasetError

__all__ = ["ShortRangeSetup", "load_short_range", "dipole_parts", "subtract", "add_back", "label_rms",
           "subtract_fc_reference", "model_record", "write_model_born", "apply_to_splits"]

#: File name of the Born data inside a short-range model directory.
BORN_NAME = "BORN"


@dataclass(frozen=True, eq=False)
class ShortRangeSetup:
    """Reference primitive cell, its Born data, the supercell matrix (3×3 int or None: inferred per frame),
    whether stress is subtracted, the largest displacement fraction, caching, and the source files."""

    primitive: Crystal
    born: Born
    supercell_matrix: np.ndarray | None
    stress: bool = True
    max_displacement: float = 0.35
    cache: bool = True
    born_file: str | None = None
    reference: str | None = None


def load_short_range(cfg) -> ShortRangeSetup:
    """From a :class:`~phonjax.train.config.ShortRangeConfig` (paths relative to the working directory)."""
    from phonjax.io.structure import read_structure
    ref = Path(cfg.reference)
    if not ref.is_file():
        raise DatasetError(f"data.short_range.reference: structure file not found: {ref}")
    prim = read_structure(ref)
    born = read_born(cfg.born, prim)
    M = None
    if cfg.supercell is not None:
        v = np.asarray(cfg.supercell)
        try:
            M = supercell_matrix(v.reshape(3, 3) if v.size == 9 else (v.reshape(()) if v.size == 1 else v))
        except ValueError as e:
            raise DatasetError(f"data.short_range.supercell: {e}") from None
    return ShortRangeSetup(prim, born, M, bool(cfg.stress), float(cfg.max_displacement), bool(cfg.cache),
                           str(cfg.born), str(cfg.reference))


def _cache_key(frames, setup: ShortRangeSetup, stress: bool) -> str:
    h = hashlib.sha256(b"dipole_labels v2")
    for a in (setup.primitive.cell, setup.primitive.positions, setup.primitive.numbers, setup.born.zstar,
              setup.born.epsilon, np.float64(setup.born.factor),
              np.zeros(0) if setup.supercell_matrix is None else setup.supercell_matrix,
              np.float64(setup.max_displacement), np.int64(stress)):
        h.update(np.ascontiguousarray(a).tobytes())
    for f in frames:
        for a in (f.numbers, f.positions, f.cell, np.int64(f.stress is not None)):  # stress only where labelled
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phonjax" / "dipole_labels"


def dipole_parts(frames, setup: ShortRangeSetup, *, stress: bool | None = None,
                 log: Callable[[str], None] | None = None) -> tuple[DipoleLabels, ...]:
    """:class:`DipoleLabels` of each frame (stress only when ``stress`` (default ``setup.stress``) and the frame
    has a stress label). A frame that is not a displaced supercell of the reference raises DatasetError."""
    frames = tuple(frames)
    stress = setup.stress if stress is None else stress
    path = _cache_dir() / f"{_cache_key(frames, setup, stress)}.npz" if setup.cache else None
    if path is not None and path.is_file():
        try:
            z = np.load(path)
            out, o = [], 0
            for k, f in enumerate(frames):
                n = f.n_atoms
                s = z["stress"][k]
                out.append(DipoleLabels(float(z["energy"][k]), z["forces"][o:o + n], None if np.isnan(s).any() else s,
                                        z["displacements"][o:o + n], z["sites"][o:o + n], z["matrix"][k],
                                        z["deformation"][k]))
                o += n
            if log:
                log(f"dipole labels of {len(frames)} structures read from {path}")
            return tuple(out)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            pass
    t = time.perf_counter()
    out = []
    for f in frames:
        try:
            out.append(dipole_labels(f.positions, f.numbers, f.cell, setup.primitive, setup.born,
                                     setup.supercell_matrix, stress=stress and f.stress is not None,
                                     max_fraction=setup.max_displacement))
        except ValueError as e:
            raise DatasetError(f"{f.source}: dipole labels: {e}") from None
    if log:
        log(f"dipole labels of {len(frames)} structures computed in {time.perf_counter() - t:.1f} s")
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, energy=np.array([d.energy for d in out]),
                     forces=np.concatenate([d.forces for d in out]),
                     stress=np.array([np.full((3, 3), np.nan) if d.stress is None else d.stress for d in out]),
                     displacements=np.concatenate([d.displacements for d in out]),
                     sites=np.concatenate([d.sites for d in out]), matrix=np.array([d.supercell_matrix for d in out]),
                     deformation=np.array([d.deformation for d in out]))
            os.replace(tmp, path)
        except OSError:
            pass
    return tuple(out)


def _shift(ds: Dataset, parts, sign: float, drop_unmatched_stress: bool) -> Dataset:
    if len(parts) != len(ds.frames):
        raise ValueError(f"{len(parts)} dipole parts for {len(ds.frames)} frames")
    frames = []
    for f, d in zip(ds.frames, parts):
        stress = f.stress
        if stress is not None:
            if d.stress is not None:
                stress = stress + sign * d.stress
            elif drop_unmatched_stress:
                stress = None
        frames.append(replace(f, energy=f.energy + sign * d.energy, forces=f.forces + sign * d.forces, stress=stress))
    return Dataset(tuple(frames), ds.isolated_atom_energies)


def subtract(ds: Dataset, parts) -> Dataset:
    """Short-range labels: energy − E_dd, forces − F_dd, stress − σ_dd (a stress label without σ_dd is dropped:
    it would mix full and short-range physics)."""
    return _shift(ds, parts, -1.0, True)


def add_back(ds: Dataset, parts) -> Dataset:
    """The inverse of :func:`subtract` for frames whose stress was subtracted (full labels again)."""
    return _shift(ds, parts, +1.0, False)


def label_rms(ds: Dataset, parts) -> dict:
    """RMS of the dipole parts and of the full labels: energy per atom (eV/atom), force components (eV/Å; also of
    the short-range remainder F − F_dd), stress components (eV/Å³; frames with σ_dd only)."""
    e = np.array([d.energy / f.n_atoms for d, f in zip(parts, ds.frames)])
    fd = np.concatenate([d.forces.ravel() for d in parts])
    ff = np.concatenate([f.forces.ravel() for f in ds.frames])
    sd = [d.stress for d in parts if d.stress is not None]
    sf = [f.stress for d, f in zip(parts, ds.frames) if d.stress is not None and f.stress is not None]
    rms = lambda x: float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")  # noqa: E731
    return {"energy_per_atom": rms(e), "forces": rms(fd), "stress": rms(np.array(sd)) if sd else float("nan"),
            "dft_forces": rms(ff), "remainder_forces": rms(ff - fd), "dft_stress": rms(np.array(sf)) if sf else float("nan"),
            "max_displacement": float(max(d.max_displacement for d in parts))}


def apply_to_splits(setup: ShortRangeSetup, splits: dict, log: Callable[[str], None],
                    *, stress: bool = True) -> dict:
    """{name: Dataset} → {name: short-range Dataset}; logs the RMS of what was subtracted."""
    out = {}
    for name, ds in splits.items():
        parts = dipole_parts(ds.frames, setup, stress=setup.stress and stress, log=log)
        r = label_rms(ds, parts)
        sig = (f"σ {1000 * r['stress']:.3g} meV/Å³ (DFT {1000 * r['dft_stress']:.3g})" if np.isfinite(r["stress"])
               else "no stress (labels dropped or absent)")
        log(f"short-range labels ({name}, {len(ds)} structures): subtracted RMS E {1000 * r['energy_per_atom']:.3g} "
            f"meV/atom, F {1000 * r['forces']:.3g} meV/Å (DFT {1000 * r['dft_forces']:.3g}, short-range remainder "
            f"{1000 * r['remainder_forces']:.3g}), {sig}; max |u| {r['max_displacement']:.3g} Å")
        out[name] = subtract(ds, parts)
    return out


def subtract_fc_reference(fc_ref, setup: ShortRangeSetup):
    """Force-constant reference (:class:`~phonjax.train.fc_loss.FcReference`) minus the Ewald Φ_dd rows of its
    own periodic supercell (any supercell of the reference primitive, atoms in any order)."""
    phi = dipole_fc_in_cell(fc_ref.positions, fc_ref.numbers, fc_ref.cell, setup.primitive, setup.born, None,
                            max_fraction=setup.max_displacement)
    return replace(fc_ref, fc=np.asarray(fc_ref.fc) - phi[np.asarray(fc_ref.rows)])


def model_record(setup: ShortRangeSetup) -> dict:
    """``metadata.json["long_range"]`` of the finetuned model."""
    return long_range_record(setup.born, setup.primitive, born_file=setup.born_file, reference=setup.reference,
                             supercell_matrix=setup.supercell_matrix, stored_born=BORN_NAME)


def write_model_born(setup: ShortRangeSetup, model_dir) -> Path:
    """Copy the Born file into the model directory as ``BORN`` (format kept; read_born detects it)."""
    dst = Path(model_dir) / BORN_NAME
    shutil.copyfile(setup.born_file, dst)
    return dst
