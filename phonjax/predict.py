"""End-to-end jobs behind ``phonjax predict`` and ``phonjax bands``: structure + model → force constants →
dispersion, or phonopy force constants → dispersion; both write their outputs (band.png, band.yaml,
force_constants.hdf5, summary.json, summary.txt: :data:`phonjax.io.outputs.DEFAULT_WRITERS`) into ``out_dir``
and return a :class:`PredictResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import time

import numpy as np

from phonjax.io.structure import read_structure
from phonjax.structure import Crystal

__all__ = ["predict", "bands_from_phonopy", "PredictResult", "default_supercell", "IMAGINARY_THRESHOLD_THZ",
           "ML_DEFAULT_LR"]

#: ``lr='auto'`` for force constants of an ML model (not trained short-range) when Born data is given. The mixed-space
#: ``gonze`` subtraction assumes the supercell force constants hold the full periodic dipole sum, as DFT ones do;
#: an ML model holds only a short-ranged share, so ``gonze`` dips the LO branch at every commensurate q near Γ and
#: degrades as the supercell grows. ``recip-auto`` adds the reciprocal-space C_dd with Λ* fitted to the model's own
#: polar LO–TO profile: measured vs QE DFPT at the default 5³ supercell, SevenNet-0 LiF 1.08 vs 1.41 THz RMSE, MgO
#: 1.03 vs 1.19, LiF-finetuned 0.29 vs 0.59 (benchmarks/longrange_supercell.py). DFT force constants
#: (:func:`bands_from_phonopy`) keep ``gonze``; short-range models get ``ewald`` (see _short_range_model).
ML_DEFAULT_LR = "recip-auto"

#: Frequencies below −this (THz) count as imaginary modes in the summary.
IMAGINARY_THRESHOLD_THZ = 0.01


@dataclass(frozen=True, eq=False)
class PredictResult:
    """force_constants: ForceConstants; band: BandStructure; files: written paths; timings: seconds per step;
    gamma_frequencies (3n,) THz (with q_direction when Born data is used); max_frequency THz; n_imaginary_q:
    path points with a mode below −IMAGINARY_THRESHOLD_THZ; min_frequency THz; comparison: metrics against the
    reference (or None); reference: the reference dispersion (:class:`~phonjax.io.band_yaml.BandData`) or None.
    ``files`` names every file the writers (:data:`phonjax.io.outputs.DEFAULT_WRITERS`) write."""

    force_constants: object
    band: object
    out_dir: Path
    files: dict
    timings: dict
    gamma_frequencies: np.ndarray
    max_frequency: float
    min_frequency: float
    n_imaginary_q: int
    lr: str
    supercell_matrix: np.ndarray
    comparison: object = None
    extra: dict = field(default_factory=dict)
    reference: object = None

    def as_dict(self) -> dict:
        d = {"lr": self.lr, "supercell_matrix": self.supercell_matrix.tolist(),
             "n_atoms_supercell": int(self.force_constants.supercell.crystal.n_atoms),
             "gamma_frequencies_THz": [round(float(x), 6) for x in self.gamma_frequencies],
             "max_frequency_THz": self.max_frequency, "min_frequency_THz": self.min_frequency,
             "n_imaginary_qpoints": self.n_imaginary_q, "n_qpoints": int(len(self.band.qpoints)),
             "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
             "files": {k: str(v) for k, v in self.files.items()}, **self.extra}
        rep = getattr(self.force_constants, "report", None)
        if rep is not None:
            d["force_constants"] = {"mode": rep.mode, "n_hvp": rep.n_hvp, "asr": rep.asr,
                                    "asr_violation_before": rep.asr_before, "asr_violation_after": rep.asr_after,
                                    "perm_violation_before": rep.perm_before, "perm_violation_after": rep.perm_after}
        if self.comparison is not None and hasattr(self.comparison, "as_dict"):
            d["comparison"] = self.comparison.as_dict()
        return d

    def summary_text(self) -> str:
        fc = self.force_constants
        lines = [f"phonjax: {len(fc.primitive.numbers)} atoms/cell ({''.join(fc.primitive.symbols)}), supercell "
                 f"{self.supercell_matrix.tolist()} ({fc.supercell.crystal.n_atoms} atoms), lr={self.lr}",
                 "Γ frequencies (THz): " + " ".join(f"{(0.0 if abs(x) < 5e-5 else x):.4f}" for x in self.gamma_frequencies),
                 f"max frequency {self.max_frequency:.4f} THz; min {self.min_frequency:.4f} THz; "
                 + (f"imaginary modes at {self.n_imaginary_q} of {len(self.band.qpoints)} path points"
                    if self.n_imaginary_q else "no imaginary modes on the path"),
                 "timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        if self.comparison is not None and hasattr(self.comparison, "summary"):
            lines.append(self.comparison.summary())
        lines.append(f"wrote {', '.join(sorted(p.name for p in self.files.values()))} in {self.out_dir}")
        return "\n".join(lines)


#: How :func:`predict` chooses the supercell when none is given (``supercell_rule``).
SUPERCELL_RULES = ("receptive", "cutoff")


def default_supercell(crystal: Crystal, cutoff: float, *, rule: str, layers: int | None = None,
                      receptive_field: float | None = None) -> np.ndarray:
    """Smallest N·I (3×3) whose supercell widths (distance between opposite faces) all reach a length:

    * ``rule="cutoff"``: 2·cutoff — the smallest supercell that holds the model's cutoff sphere (no atom sees
      its own image within r_max); force constants beyond it are folded.
    * ``rule="receptive"``: the model's receptive field (Å; ``receptive_field``, or ``layers``·cutoff for message
      passing over ``layers`` hops of r_max), never less than 2·cutoff; frequencies converge there
      (reports/lif.md §e). Without either it falls back to the cutoff rule.
    """
    if rule not in SUPERCELL_RULES:
        raise ValueError(f"supercell rule must be one of {SUPERCELL_RULES}, got {rule!r}")
    length = 2.0 * cutoff
    if rule == "receptive":
        reach = receptive_field if receptive_field is not None else (int(layers) * cutoff if layers else None)
        if reach is not None:
            length = max(length, float(reach))
    rec = np.linalg.inv(crystal.cell)
    width = 1.0 / np.linalg.norm(rec, axis=0)
    n = max(1, int(math.ceil(length / width.min() - 1e-9)))
    return np.eye(3, dtype=np.int64) * n


def _load_model(model):
    if model is None:
        try:
            from phonjax.defaults import default_model
        except ImportError:
            raise ValueError("no model given (--model DIR) and no default model is available") from None
        return default_model()
    if isinstance(model, (str, Path)):
        from phonjax.models import load_model
        return load_model(model)
    return model


def _born(born, crystal):
    if born is None or not isinstance(born, (str, Path)):
        return born
    from phonjax.io.born import read_born
    return read_born(born, crystal)


def _short_range_model(m, model_arg, crystal, born, lr: str):
    """(born, lr, info) for a model trained on dipole-subtracted labels (``metadata["long_range"]``), else
    (born, lr, None). Such a model holds no dipole–dipole interaction: ``lr='auto'`` → ``'ewald'`` (the full
    C_dd(q) added, nothing subtracted) with the model's recorded Born data unless ``born`` is given (then the
    user's, with a warning when it differs); any other mode is obeyed with a warning."""
    import warnings
    from phonjax.longrange.dipole_labels import born_from_record, is_short_range

    meta = getattr(m, "metadata", None)
    if not is_short_range(meta):
        return born, lr, None
    rec = meta["long_range"]
    model_dir = Path(model_arg) if isinstance(model_arg, (str, Path)) else None
    info = {"kind": rec["kind"], "lr_requested": lr}
    try:
        model_born = born_from_record(rec, crystal, model_dir)
        model_err = None
    except ValueError as e:
        model_born, model_err = None, str(e)
    if born is None:
        if model_born is None:
            raise ValueError(f"short-range model: its Born data cannot be used for this structure ({model_err}); "
                             "give born=... (--born)")
        born, info["born_source"] = model_born, f"model ({model_born.source})"
    else:
        info["born_source"] = f"user ({born.source})"
        if model_born is not None and (born.n_atoms != model_born.n_atoms
                                       or np.abs(born.zstar - model_born.zstar).max() > 1e-4
                                       or np.abs(born.epsilon - model_born.epsilon).max() > 1e-4):
            warnings.warn("the given Born charges / dielectric tensor differ from those the short-range model was "
                          "trained with; using the given ones", stacklevel=3)
            info["born_differs_from_model"] = True
    if lr == "auto":
        lr = "ewald"
    elif lr != "ewald":
        warnings.warn(f"lr={lr!r} on a short-range (dipole-subtracted) model: its force constants hold no "
                      "dipole–dipole part, so only lr='ewald' (full C_dd(q), nothing subtracted) is consistent; "
                      f"using {lr!r} as asked", stacklevel=3)
    info["lr_used"] = lr
    return born, lr, info


def _reference_path(reference):
    """Explicit path segments reproducing a reference band.yaml's q-points (its segments are straight)."""
    from phonjax.io.band_yaml import read_band_yaml
    ref = read_band_yaml(reference)
    seg = ref.segment_nqpoint or (len(ref.qpoints),)
    path, npts, k = [], [], 0
    for i, m in enumerate(seg):
        q = ref.qpoints[k:k + m]
        lab = ref.labels[i] if i < len(ref.labels) else ("", "")
        t = np.linspace(0, 1, m)
        if m < 2 or np.abs(q[0][None] + t[:, None] * (q[-1] - q[0])[None] - q).max() > 1e-6:
            return ref, None, None
        path.append([(lab[0], q[0]), (lab[1], q[-1])])
        npts.append(m)
        k += m
    return ref, path, npts


def _band(fc, *, lr, npoints, reference, ewald_lambda, leak_region, lo_projection):
    from phonjax.bands import band_structure
    kw = dict(lr=lr, ewald_lambda=ewald_lambda, leak_region=leak_region, lo_projection=lo_projection)
    if reference is not None:
        ref, path, npts = _reference_path(reference)
        if path is not None and len(set(npts)) == 1:
            return band_structure(fc, path, npoints=npts[0], **kw), ref
        if path is not None:  # unequal segment sizes: sample each segment with its own count
            from phonjax.bands import BandStructure
            parts = [band_structure(fc, [seg], npoints=m, **kw) for seg, m in zip(path, npts)]
            return _concat(parts, BandStructure), ref
        return band_structure(fc, None, npoints=npoints, **kw), ref
    return band_structure(fc, None, npoints=npoints, **kw), None


def _concat(parts, cls):
    off, d, labels, pos = 0.0, [], [], []
    for p in parts:
        dd = p.distances - p.distances[0] + off
        d.append(dd)
        for lab, x in zip(p.labels, p.label_positions):
            x = x - p.distances[0] + off
            if pos and abs(pos[-1] - x) < 1e-12:
                if labels[-1] != lab:
                    labels[-1] = f"{labels[-1]}|{lab}"
            else:
                labels.append(lab), pos.append(x)
        off = float(dd[-1])
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    ev = None if parts[0].eigenvectors is None else cat("eigenvectors")
    return cls(cat("qpoints"), np.concatenate(d), cat("frequencies"), ev, tuple(labels), tuple(pos),
               tuple(x for p in parts for x in p.segment_nqpoint), tuple(x for p in parts for x in p.segment_labels),
               cat("q_directions"), parts[0].unit, parts[0].lr, parts[0].primitive)


def _finish(fc, *, lr, born, q_direction, npoints, reference, ewald_lambda, leak_region, lo_projection, out_dir,
            timings, progress, extra=None) -> PredictResult:
    from phonjax.dynmat import resolve_lr
    from phonjax.io.outputs import DEFAULT_WRITERS, write_outputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = fc.born if born is None else born
    mode = resolve_lr(lr, b)
    if b is not None and b is not fc.born:
        fc = fc.with_born(b)
    t = time.perf_counter()
    band, ref = _band(fc, lr=mode, npoints=npoints, reference=reference, ewald_lambda=ewald_lambda,
                      leak_region=leak_region, lo_projection=lo_projection)
    qd = q_direction if q_direction is not None else ((1.0, 0.0, 0.0) if mode != "none" else None)
    gamma = fc.frequencies([[0.0, 0.0, 0.0]], lr=mode, q_direction=qd, ewald_lambda=ewald_lambda,
                           leak_region=leak_region, lo_projection=lo_projection)[0]
    timings["bands"] = time.perf_counter() - t
    extra = dict(extra or {})
    if mode != "none":  # record the correction's Λ (and recip-auto's fit) in summary.json
        from phonjax.dynmat import _correction
        corr = _correction(fc, mode, fc.born, ewald_lambda, leak_region, lo_projection)
        extra["long_range_correction"] = {"mode": mode, "lambda": corr.lam,
                                          **{k: corr.info[k] for k in ("lambda_fit",) if k in corr.info}}
    progress.update(1)
    t = time.perf_counter()
    comparison = None
    if ref is not None:
        from phonjax.compare import compare_bands
        try:
            comparison = compare_bands(band.to_band_data(), ref)
        except ValueError:
            comparison = None
    f = band.frequencies
    files = {w.name: out / w.name for w in DEFAULT_WRITERS}
    res = PredictResult(fc, band, out, files, timings, gamma, float(f.max()), float(f.min()),
                        int(np.sum(f.min(axis=1) < -IMAGINARY_THRESHOLD_THZ)), mode, np.asarray(fc.supercell.matrix),
                        comparison, extra, ref)
    for w in DEFAULT_WRITERS:  # summary.json reports the time the writers before it took
        timings["write"] = time.perf_counter() - t
        write_outputs(res, (w,))
    timings["write"] = time.perf_counter() - t
    progress.update(1)
    return res


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="phonjax", unit="step", disable=not show, leave=False)


def predict(structure, model=None, supercell=None, *, born=None, lr: str = "auto", ewald_lambda=None,
            leak_region=None, lo_projection: bool = False, q_direction=None, npoints: int = 101, reference=None,
            symmetry: bool = True, mode: str = "jvp", chunk_size: int | None = None, out_dir="out",
            progress: bool = True, allow_small_supercell: bool = False,
            edge_chunk: int | None = None, supercell_rule: str = "receptive") -> PredictResult:
    """Phonon dispersion of ``structure`` (path any ASE format / Atoms / Crystal, primitive cell preferred) with
    ``model`` (model directory, a Model, an object with ``bind`` or an energy_fn(positions, cell, numbers)).

    supercell: N, (N1, N2, N3), 3×3 or None: :func:`default_supercell` with ``supercell_rule`` — "receptive"
    (default: widths ≥ the model's ``receptive_field``, e.g. layers·r_max, where frequencies converge) or "cutoff"
    (widths ≥ 2·r_max: cheaper, folds the force constants' tail).  born: BORN /
    QE file or Born; a short-range model (trained on dipole-subtracted labels, ``metadata["long_range"]``)
    brings its own, and ``lr='auto'`` is then ``'ewald'`` (recorded in summary.json as ``short_range_model``); for
    other models ``lr='auto'`` with Born data is :data:`ML_DEFAULT_LR` (``recip-auto``), without it ``none``.
    symmetry: site-symmetry-reduced Hessian-vector products.  edge_chunk: a phonjax Model's edges per
    rematerialised message chunk (None: automatic by graph size; 0: off).  reference: band.yaml overlaid
    and compared (the dispersion is then computed on its q-points).  Writes band.png, band.yaml,
    force_constants.hdf5, summary.json/txt into ``out_dir``.
    """
    from phonjax.force_constants import force_constants

    bar = _progress(3, progress)
    timings: dict = {}
    crystal = read_structure(structure)
    m = _load_model(model)
    if supercell is None:
        r = getattr(m, "r_max", None) or getattr(m, "cutoff", None)
        if r is None:
            raise ValueError("supercell not given and the model has no r_max/cutoff to choose one")
        reach = getattr(m, "receptive_field", None)  # phonjax.models.PhononModel
        supercell = default_supercell(crystal, float(r), receptive_field=reach, rule=supercell_rule)
    b = _born(born, crystal)
    b, lr, sr_info = _short_range_model(m, model, crystal, b, lr)
    if lr == "auto" and b is not None:
        lr = ML_DEFAULT_LR
    bar.set_description("force constants")
    t = time.perf_counter()
    fc = force_constants(m, crystal, supercell, symmetry=symmetry, mode=mode, chunk_size=chunk_size, born=b,
                         allow_small_supercell=allow_small_supercell, edge_chunk=edge_chunk)
    timings["force_constants"] = time.perf_counter() - t
    bar.update(1)
    bar.set_description("bands")
    try:
        return _finish(fc, lr=lr, born=b, q_direction=q_direction, npoints=npoints, reference=reference,
                       ewald_lambda=ewald_lambda, leak_region=leak_region, lo_projection=lo_projection,
                       out_dir=out_dir, timings=timings, progress=bar,
                       extra=None if sr_info is None else {"short_range_model": sr_info})
    finally:
        bar.close()


def bands_from_phonopy(params, *, force_sets=None, born=None, lr: str = "auto", ewald_lambda=None,
                       leak_region=None, lo_projection: bool = False, q_direction=None, npoints: int = 101,
                       reference=None, out_dir="out", progress: bool = True) -> PredictResult:
    """As :func:`predict` from external force constants: a phonopy_params.yaml (or phonopy_disp.yaml with
    ``force_sets``) or a phonopy.Phonopy. ``born``: BORN/QE file or Born (default: the yaml's NAC params).
    Without long range (lr none), phonopy's own frequencies are reproduced (no extra q-space ASR)."""
    from phonjax.io.phonopy import from_phonopy

    bar = _progress(3, progress)
    timings: dict = {}
    t = time.perf_counter()
    fc = from_phonopy(params, force_sets=force_sets)
    b = _born(born, fc.primitive)
    timings["load"] = time.perf_counter() - t
    bar.update(1)
    try:
        return _finish(fc, lr=lr, born=b, q_direction=q_direction, npoints=npoints, reference=reference,
                       ewald_lambda=ewald_lambda, leak_region=leak_region, lo_projection=lo_projection,
                       out_dir=out_dir, timings=timings, progress=bar, extra={"source": str(params)})
    finally:
        bar.close()
