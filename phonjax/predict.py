"""End-to-end jobs behind ``phonjax predict`` and ``phonjax bands``: structure + model → force constants →
dispersion and thermal properties, or phonopy force constants → the same; both write their outputs (band.png,
band.yaml, force_constants.hdf5, thermal.png, summary.json, summary.txt: :data:`phonjax.io.outputs.DEFAULT_WRITERS`) into ``out_dir``
and return a :class:`PredictResult`.

The long-range arguments become one :class:`~phonjax.longrange.LongRange` at the top of each job; ``lr='auto'``
is resolved from the force constants' provenance (:mod:`phonjax.longrange.policy`: recip-auto for a model,
ewald for a short-range model, gonze for phonopy/DFT force constants), the Correction is built once and used for
the band structure and the Γ frequencies. q_direction is in reduced coordinates of the reciprocal lattice
(phonopy's convention); without it the Γ frequencies use the reduced direction (1, 0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import time

import numpy as np

from phonjax import checks
from phonjax.io.structure import read_structure
from phonjax.longrange.policy import SUPERCELL_RULES
from phonjax.progress import Progress
from phonjax.structure import Crystal

__all__ = ["predict", "bands_from_phonopy", "PredictResult", "default_supercell", "IMAGINARY_THRESHOLD_THZ"]

#: Frequencies below −this (THz) count as imaginary modes in the summary.
IMAGINARY_THRESHOLD_THZ = 0.01


@dataclass(frozen=True, eq=False)
class PredictResult:
    """force_constants: ForceConstants; band: BandStructure; files: written paths; timings: seconds per step;
    gamma_frequencies (3n,) THz (with q_direction when Born data is used); max_frequency THz; n_imaginary_q:
    path points with a mode below −IMAGINARY_THRESHOLD_THZ; min_frequency THz; comparison: metrics against the
    reference (or None); reference: the reference dispersion (:class:`~phonjax.io.band_yaml.BandData`) or None;
    thermal: F, S, C_V vs T (:class:`~phonjax.thermal.ThermalProperties`, :func:`~phonjax.thermal.mesh_thermal`
    on the default mesh with the bands' correction). ``files`` names every file the writers (:data:`phonjax.io.outputs.DEFAULT_WRITERS`) write."""

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
    thermal: object = None

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
                                    "perm_violation_before": rep.perm_before, "perm_violation_after": rep.perm_after,
                                    "chunk_size": rep.chunk_size, "edge_chunk": rep.edge_chunk,
                                    "n_devices": rep.n_devices}
        if self.comparison is not None and hasattr(self.comparison, "as_dict"):
            d["comparison"] = self.comparison.as_dict()
        if self.thermal is not None:
            from phonjax.thermal import thermal_summary
            d["thermal"] = thermal_summary(self.thermal)
        return d

    def _thermal_300(self) -> list:
        if self.thermal is None or not np.any(np.abs(self.thermal.temperatures - 300.0) < 1e-9):
            return []
        return [self.thermal.at(300.0)]

    def summary_text(self) -> str:
        fc = self.force_constants
        lines = [f"phonjax: {len(fc.primitive.numbers)} atoms/cell ({''.join(fc.primitive.symbols)}), supercell "
                 f"{self.supercell_matrix.tolist()} ({fc.supercell.crystal.n_atoms} atoms), lr={self.lr}",
                 "Γ frequencies (THz): " + " ".join(f"{(0.0 if abs(x) < 5e-5 else x):.4f}" for x in self.gamma_frequencies),
                 f"max frequency {self.max_frequency:.4f} THz; min {self.min_frequency:.4f} THz; "
                 + (f"imaginary modes at {self.n_imaginary_q} of {len(self.band.qpoints)} path points"
                    if self.n_imaginary_q else "no imaginary modes on the path"),
                 *([f"thermal (mesh {'×'.join(map(str, self.thermal.mesh))}) at 300 K: F {t['F']:.3f} kJ/mol, "
                    f"S {t['S']:.3f} J/(K·mol), C_V {t['Cv']:.3f} J/(K·mol)" for t in self._thermal_300()]),
                 "timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        if self.comparison is not None and hasattr(self.comparison, "summary"):
            lines.append(self.comparison.summary())
        lines.append(f"wrote {', '.join(sorted(p.name for p in self.files.values()))} in {self.out_dir}")
        return "\n".join(lines)


def default_supercell(crystal: Crystal, cutoff: float, *, rule: str, layers: int | None = None,
                      receptive_field: float | None = None) -> np.ndarray:
    """Smallest diag(N1, N2, N3) whose widths (N_i × the cell's width along lattice vector i) all reach a length,
    each axis on its own: N³ for cubic cells; wurtzite AlN 4×4×2 for 10 Å (4³ reaches 20 Å along c only, and
    one long-range Λ then no longer fits every direction, reports/polar.md):

    * ``rule="cutoff"``: 2·cutoff — the smallest supercell that holds the model's cutoff sphere (no atom sees
      its own image within r_max); force constants beyond it are folded.
    * ``rule="receptive"``: the model's receptive field (Å; ``receptive_field``, or ``layers``·cutoff for message
      passing over ``layers`` hops of r_max), never less than 2·cutoff; frequencies converge there
      (reports/lif.md §e). Without either it falls back to the cutoff rule.
    """
    if rule not in ("receptive", "cutoff"):
        raise ValueError(f"supercell rule must be 'receptive' or 'cutoff', got {rule!r}")
    length = 2.0 * cutoff
    if rule == "receptive":
        reach = receptive_field if receptive_field is not None else (int(layers) * cutoff if layers else None)
        if reach is not None:
            length = max(length, float(reach))
    width = 1.0 / np.linalg.norm(np.linalg.inv(crystal.cell), axis=0)  # distance between opposite faces
    n = np.maximum(1, np.ceil(length / width - 1e-9)).astype(np.int64)
    return np.diag(n)


def resolve_model(model, bar=None):
    """The model of a job: a loaded model as given, a model directory loaded, None → the default model
    (:mod:`phonjax.defaults`, converted on first use with a note and a progress stage on ``bar``)."""
    if model is None:
        try:
            from phonjax.defaults import default_model, default_model_dir
        except ImportError:
            raise ValueError("no model given (--model DIR) and no default model is available") from None
        if bar is not None and not (default_model_dir() / "config.yaml").is_file():
            import warnings
            from phonjax.checks import InputNote
            from phonjax.defaults import DEFAULT_MODEL
            warnings.warn(f"converting the default model ({DEFAULT_MODEL}) into {default_model_dir()} (first use "
                          "only)", InputNote, stacklevel=3)
            bar.stage(f"converting {DEFAULT_MODEL}")
        return default_model()
    if isinstance(model, (str, Path)):
        from phonjax.models import load_model
        return load_model(model)
    return model


def _born(born, crystal, unitcell=None):
    """Born data for ``crystal`` (a file is read; ``unitcell``: the non-primitive input cell its atoms may list)."""
    if born is None or not isinstance(born, (str, Path)):
        return born
    from phonjax.io.born import read_born
    return read_born(born, crystal, unitcell=unitcell)


def _short_range_model(m, model_arg, crystal, born, lr: str):
    """(born, info) for a model trained on dipole-subtracted labels (``metadata["long_range"]``), else
    (born, None). Such a model holds no dipole–dipole interaction (``lr='auto'`` is ``'ewald'`` by the policy):
    its recorded Born data is used unless ``born`` is given (then the user's, with a warning when it differs);
    a mode other than ewald is obeyed with a warning."""
    import warnings
    from phonjax.longrange.dipole_labels import born_from_record, is_short_range

    meta = getattr(m, "metadata", None)
    if not is_short_range(meta):
        return born, None
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
                             "give born=...")
        born, info["born_source"] = model_born, f"model ({model_born.source})"
    else:
        info["born_source"] = f"user ({born.source})"
        if model_born is not None and (born.n_atoms != model_born.n_atoms
                                       or np.abs(born.zstar - model_born.zstar).max() > 1e-4
                                       or np.abs(born.epsilon - model_born.epsilon).max() > 1e-4):
            warnings.warn("the given Born charges / dielectric tensor differ from those the short-range model was "
                          "trained with; using the given ones", stacklevel=3)
            info["born_differs_from_model"] = True
    if lr not in ("auto", "ewald"):
        warnings.warn(f"lr={lr!r} on a short-range (dipole-subtracted) model: its force constants hold no "
                      "dipole–dipole part, so only lr='ewald' (full C_dd(q), nothing subtracted) is consistent; "
                      f"using {lr!r} as asked", stacklevel=3)
    return born, info


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


def _band(fc, spec, corr, *, npoints, reference):
    from phonjax.bands import band_structure
    kw = dict(longrange=spec, correction=corr)
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


@dataclass(frozen=True)
class _Early:
    """What the force-constant writer reads of a result, before the result exists."""

    force_constants: object


def _finish(fc, spec, *, npoints, reference, out_dir, timings, progress, extra=None) -> PredictResult:
    """Bands, Γ frequencies and files (:data:`phonjax.io.outputs.DEFAULT_WRITERS`) of force constants ``fc``
    (Born data attached) with the resolved LongRange ``spec``; the Correction is built once here."""
    from phonjax.dynmat import phonons
    from phonjax.io.outputs import DEFAULT_WRITERS, FORCE_CONSTANTS, write_outputs
    from phonjax.thermal import mesh_thermal

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = spec.mode
    extra = dict(extra or {})
    files = {w.name: out / w.name for w in DEFAULT_WRITERS}
    # written first: computed force constants survive any later failure (bands, plot, comparison)
    FORCE_CONSTANTS.write(_Early(fc), files[FORCE_CONSTANTS.name])
    progress.stage("bands")
    t = time.perf_counter()
    corr = spec.correction(fc)
    band, ref = _band(fc, spec, corr, npoints=npoints, reference=reference)
    qd = spec.q_direction if spec.q_direction is not None else ((1.0, 0.0, 0.0) if mode != "none" else None)
    gamma = phonons(fc, [[0.0, 0.0, 0.0]], corr, q_direction=qd)[0]
    timings["bands"] = time.perf_counter() - t
    progress.stage("thermal")
    t = time.perf_counter()
    thermal = mesh_thermal(fc, corr)
    timings["thermal"] = time.perf_counter() - t
    if corr is not None:  # record the correction's Λ (and recip-auto's fit) in summary.json
        extra["long_range_correction"] = {"mode": mode, "lambda": corr.lam,
                                          **{k: corr.info[k] for k in ("lambda_fit",) if k in corr.info}}
    progress.stage("writing")
    t = time.perf_counter()
    comparison = None
    if ref is not None:
        from phonjax.compare import compare_bands
        try:
            comparison = compare_bands(band.to_band_data(), ref)
        except ValueError:
            comparison = None
    f = band.frequencies
    res = PredictResult(fc, band, out, files, timings, gamma, float(f.max()), float(f.min()),
                        int(np.sum(f.min(axis=1) < -IMAGINARY_THRESHOLD_THZ)), mode, np.asarray(fc.supercell.matrix),
                        comparison, extra, ref, thermal)
    for w in DEFAULT_WRITERS:  # summary.json reports the time the writers before it took
        timings["write"] = time.perf_counter() - t
        if w is not FORCE_CONSTANTS:
            write_outputs(res, (w,))
    timings["write"] = time.perf_counter() - t
    return res


def predict(structure, model=None, supercell=None, *, born=None, lr: str = "auto", ewald_lambda=None,
            leak_region=None, lo_projection: bool = False, q_direction=None, npoints: int = 101, reference=None,
            symmetry: bool = True, mode: str = "auto", chunk_size="auto", out_dir="out",
            progress: bool = True, allow_small_supercell: bool = False,
            edge_chunk: int | None = None, supercell_rule: str = "auto", primitive: bool = True) -> PredictResult:
    """Phonon dispersion of ``structure`` (path any ASE format / Atoms / Crystal, primitive cell preferred) with
    ``model`` (model directory, a Model, an object with ``bind`` or an energy_fn(positions, cell, numbers)).

    supercell: N, (N1, N2, N3), 3×3 or None: :func:`default_supercell` with ``supercell_rule`` — "receptive"
    (widths ≥ the model's ``receptive_field``, e.g. layers·r_max, where the model's own frequencies converge),
    "cutoff" (widths ≥ 2·r_max) or "auto" (default: "cutoff" where ``lr`` resolves to ``recip-auto``, else
    "receptive"; :func:`phonjax.longrange.policy.supercell_rule`).  born: BORN /
    QE file or Born; a short-range model (trained on dipole-subtracted labels, ``metadata["long_range"]``)
    brings its own, and ``lr='auto'`` is then ``'ewald'`` (recorded in summary.json as ``short_range_model``); for
    other models ``lr='auto'`` with Born data is ``recip-auto``, without it ``none`` (:mod:`phonjax.longrange.policy`).
    q_direction: reduced (3,) direction of approach to Γ for the Γ frequencies.
    symmetry: site-symmetry-reduced Hessian-vector products.  edge_chunk: a phonjax Model's edges per
    rematerialised message chunk (None: automatic by graph size; 0: off).  reference: band.yaml overlaid
    and compared (the dispersion is then computed on its q-points).  Writes band.png, band.yaml,
    force_constants.hdf5, summary.json/txt into ``out_dir``.  primitive: a non-primitive cell (conventional,
    supercell) is reduced to its primitive cell (:func:`phonjax.checks.reduce_to_primitive`; the supercell spec,
    given over the input cell, is translated so the supercell is the same; a Born file may list the input cell's
    atoms), with an :class:`phonjax.checks.InputNote` warning and ``primitive_reduction`` in summary.json.
    Warnings (``warnings.warn``): Born charge-neutrality corrections above 1e-3 e per atom; no Born data for a
    polar-looking compound (both recorded in summary.json). progress: a stage bar on stderr (model, force
    constants per batch of Hessian-vector products, bands, writing).
    """
    from phonjax.longrange.spec import LongRange

    spec = LongRange(lr, None, ewald_lambda, leak_region, lo_projection, q_direction)  # checked before any work
    if supercell_rule not in SUPERCELL_RULES:
        raise ValueError(f"supercell rule must be one of {SUPERCELL_RULES}, got {supercell_rule!r}")
    with Progress(progress) as bar:
        return _predict(structure, model, supercell, bar, spec, born=born, lr=lr, npoints=npoints,
                        reference=reference, symmetry=symmetry, mode=mode, chunk_size=chunk_size,
                        out_dir=out_dir, allow_small_supercell=allow_small_supercell, edge_chunk=edge_chunk,
                        supercell_rule=supercell_rule, primitive=primitive)


def _predict(structure, model, supercell, bar, spec, *, born, lr, npoints, reference, symmetry, mode, chunk_size,
             out_dir, allow_small_supercell, edge_chunk, supercell_rule, primitive) -> PredictResult:
    from phonjax.force_constants import force_constants, model_provenance
    from phonjax.longrange.policy import resolve_mode, supercell_rule as policy_supercell_rule

    timings: dict = {}
    bar.stage("model")
    crystal = read_structure(structure)
    name = Path(structure).name if isinstance(structure, (str, Path)) else "the structure"
    crystal, supercell, unitcell, extra = checks.primitive_for_job(crystal, supercell, name, primitive)
    checks.check_reference_file(reference, 3 * crystal.n_atoms)
    m = resolve_model(model, bar)
    b = _born(born, crystal, unitcell)
    b, sr_info = _short_range_model(m, model, crystal, b, lr)
    lr_mode = resolve_mode(lr, model_provenance(m), b)  # refuses a mode without Born data before the work
    if supercell is None:
        r = getattr(m, "r_max", None) or getattr(m, "cutoff", None)
        if r is None:
            raise ValueError("supercell not given and the model has no r_max/cutoff to choose one")
        reach = getattr(m, "receptive_field", None)  # phonjax.models.PhononModel
        rule = policy_supercell_rule(supercell_rule, lr_mode)
        supercell = default_supercell(crystal, float(r), receptive_field=reach, rule=rule)
        extra["supercell_rule"] = rule
    if sr_info is not None:
        sr_info["lr_used"] = lr_mode
        extra["short_range_model"] = sr_info
    extra.update(checks.born_notes(b, crystal, lr))  # before the long step, so it is seen in time
    t = time.perf_counter()
    fc = force_constants(m, crystal, supercell, symmetry=symmetry, mode=mode, chunk_size=chunk_size, born=b,
                         allow_small_supercell=allow_small_supercell, edge_chunk=edge_chunk,
                         progress=bar.directions)
    timings["force_constants"] = time.perf_counter() - t
    return _finish(fc, spec.resolved(fc), npoints=npoints, reference=reference, out_dir=out_dir,
                   timings=timings, progress=bar, extra=extra)


def bands_from_phonopy(params, *, force_sets=None, born=None, lr: str = "auto", ewald_lambda=None,
                       leak_region=None, lo_projection: bool = False, q_direction=None, npoints: int = 101,
                       reference=None, out_dir="out", progress: bool = True) -> PredictResult:
    """As :func:`predict` from external force constants: a phonopy_params.yaml (or phonopy_disp.yaml with
    ``force_sets``) or a phonopy.Phonopy. ``born``: BORN/QE file or Born (default: the yaml's NAC params).
    Without long range (lr none), phonopy's own frequencies are reproduced (no extra q-space ASR)."""
    from phonjax.io.phonopy import from_phonopy
    from phonjax.longrange.spec import LongRange

    spec = LongRange(lr, None, ewald_lambda, leak_region, lo_projection, q_direction)  # checked before any work
    with Progress(progress) as bar:
        timings: dict = {}
        bar.stage("loading force constants")
        t = time.perf_counter()
        fc = from_phonopy(params, force_sets=force_sets)
        checks.check_reference_file(reference, 3 * fc.primitive.n_atoms)
        b = _born(born, fc.primitive)
        if b is not None:
            fc = fc.with_born(b)
        timings["load"] = time.perf_counter() - t
        extra = {"source": str(params), **checks.born_notes(fc.born, fc.primitive, lr)}
        return _finish(fc, spec.resolved(fc), npoints=npoints, reference=reference, out_dir=out_dir,
                       timings=timings, progress=bar, extra=extra)
