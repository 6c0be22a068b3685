"""The ``dataset`` pipeline: structure → QE vc-relax → isolated atoms → rattled supercells → SCF → extxyz.

Directory layout under ``config.out_dir`` (everything QE read or wrote is kept)::

    relax/            vc-relax of the unit cell (vcrelax.in/.out, result.json)
    isolated/<El>/    spin-polarised isolated atom in a box (scf.in/.out, result.json)
    samples/00000/    one rattled supercell: scf.in, scf.out, result.json (the 'finished' marker)
    dataset.extxyz    every finished sample once, ordered by index (rewritten atomically at the end)
    dataset.json      settings, isolated-atom energies, pseudopotential provenance, timings, failures

Resume: a sample with a readable ``result.json`` is never recomputed; a killed sample (no result.json)
is run again. Samples are deterministic (seed, index), so a resumed run produces the same dataset.
Units: energies eV, forces eV/Å, stress eV/Å³ (ASE sign: positive = tensile), lengths Å; every parsed
pw.x output is cross-checked against ASE's independent espresso-out reader.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ..config import load_config, to_dict
from ..io.structure import StructureInputError, read_structure
from ..structure import Crystal, make_supercell
from .pseudos import provenance, pseudos_for
from ..io.qe import QEOutputError, SCFNotConvergedError, parse_pw_output
from .qe_io import PwSettings, write_pw_input
from .rattle import rattled_sample
from .report import dataset_summary, sample_dir_name, short_message
from .runner import (QERunError, atomic_write_json, atomic_write_text, find_executable, load_result, run_qe,
                     run_samples)


#: The dataset's input structure cannot be obtained (missing file, Materials Project unavailable).
DatasetInputError = StructureInputError


@dataclass(frozen=True)
class DatasetConfig:
    """Dataset settings (configs/dataset_lif.yaml).

    structure: a file ASE reads (cif, POSCAR, pw.x input, ...) or a Materials Project id 'mp-…'
    (needs MP_API_KEY and the mp-api package). supercell: diagonal (3 ints) of the relaxed unit cell.
    position_sigma Å; strain_sigma dimensionless (see rattle.py). relax_pw: unit-cell vc-relax settings;
    pw: supercell SCF settings; isolated_box Å (box edges ×1, 1.05, 1.1 for the isolated atoms, spin-polarised,
    Γ, smearing, local-TF mixing; isolated_conv_thr Ry).
    workers: concurrent pw.x runs; nprocs_per_worker: MPI ranks of each. scheduler: where samples run — None (a
    local Dask cluster, ``workers`` threads), a Dask scheduler address, or a dask-jobqueue mapping
    (:mod:`phonjax.dataset.cluster`).
    """

    structure: str
    out_dir: str = "out/dataset"
    supercell: tuple[int, int, int] = (3, 3, 3)
    n_samples: int = 10
    seed: int = 0
    position_sigma: float = 0.03
    strain_sigma: float = 0.01
    relax: bool = True
    press_conv_thr: float = 0.5
    relax_pw: PwSettings = PwSettings(kpts=(6, 6, 6))
    pw: PwSettings = PwSettings(kpts=(1, 1, 1), gamma_only=True, conv_thr=1e-8)
    isolated_atoms: bool = True
    isolated_box: float = 10.0
    isolated_conv_thr: float = 1e-5
    workers: int = 1
    nprocs_per_worker: int = 1
    scheduler: str | dict | None = None
    timeout_s: float | None = None
    output: str = "dataset.extxyz"


@dataclass(frozen=True, eq=False)
class DatasetResult:
    """Outcome of build_dataset. extxyz: the written file; n_samples: frames in it; computed/reused:
    sample indices run now / taken from disk; failed: {index: message}; isolated_energies eV per element;
    seconds_per_sample: mean wall time of pw.x over the finished samples; samples_dir: where each sample's
    pw.x input, output and stderr are kept; n_requested: config.n_samples. ``str(result)`` is a readable
    summary (:func:`phonjax.dataset.report.dataset_summary`); ``ok`` is False when samples failed."""

    extxyz: Path
    n_samples: int
    computed: tuple[int, ...]
    reused: tuple[int, ...]
    failed: dict
    isolated_energies: dict
    unit_cell: Crystal
    seconds_per_sample: float
    extra: dict = field(default_factory=dict)
    samples_dir: Path | None = None
    n_requested: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return dataset_summary(self)

    def __str__(self) -> str:
        return self.summary()


def load_dataset_config(path, overrides=None) -> DatasetConfig:
    return load_config(DatasetConfig, path, overrides)


# ------------------------------------------------------------------------------------------------- inputs
def _ase_crosscheck(out_path: Path, res, where: str) -> None:
    """Compare our parse with ASE's espresso-out reader (independent unit conversion)."""
    from ase.io import read  # noqa: PLC0415
    try:
        at = read(str(out_path), format="espresso-out", index=-1)
    except Exception:  # noqa: BLE001 - ASE cannot read some outputs; our own parse stands
        return
    calc = at.calc
    e = calc.get_potential_energy() if calc is not None else None
    if e is not None and abs(e - res.energy) > 1e-5 * max(1.0, abs(e)):
        raise QEOutputError(f"{where}: energy {res.energy} eV disagrees with ASE's reader ({e} eV)")
    if res.forces is not None and "forces" in calc.results:
        if np.max(np.abs(calc.results["forces"] - res.forces)) > 1e-5:
            raise QEOutputError(f"{where}: forces disagree with ASE's reader (unit bug?)")


_MADELUNG = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (3, 2), (4, 1), (5, 0), (4, 2), (5, 1), (6, 0),
             (4, 3), (5, 2), (6, 1), (7, 0), (5, 3), (6, 2), (7, 1)]


def hund_unpaired(z: int) -> int | None:
    """Unpaired electrons of the free atom from aufbau + Hund's rule; None for open d/f shells (there the
    aufbau guess is unreliable: the isolated-atom run then uses smearing)."""
    left = int(z)
    for n, l in _MADELUNG:
        cap = 2 * (2 * l + 1)
        k = min(left, cap)
        left -= k
        if left == 0:
            if l >= 2 and 0 < k < cap:
                return None
            return k if k <= cap // 2 else cap - k
    return None


def _symbols(c: Crystal) -> list[str]:
    return [chemical_symbols[int(z)] for z in c.numbers]


# ---------------------------------------------------------------------------------------------- pipeline
def build_dataset(config: DatasetConfig, *, workers: int | None = None, resume: bool = True,
                  progress: bool = True, max_samples: int | None = None, scheduler=None) -> DatasetResult:
    """Run the dataset pipeline (see module docstring). ``workers`` / ``scheduler`` override the config's;
    ``max_samples`` stops after that many samples (the rest stay to be computed by a resumed run).
    """
    find_executable("pw.x")
    if config.nprocs_per_worker > 1:
        find_executable("mpirun")
    from .cluster import check_scheduler
    check_scheduler(scheduler or config.scheduler)  # before the relaxation, not after it
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crystal = read_structure(config.structure)
    symbols = _symbols(crystal)
    ps = pseudos_for(symbols, config.pw.pseudo_family, config.pw.pseudo_dir)
    pdir = next(iter(ps.values())).path.parent
    files = {s: p.path.name for s, p in ps.items()}
    nproc = config.nprocs_per_worker
    t_start = time.perf_counter()

    crystal = _relax_unit_cell(config, crystal, out, pdir, files, resume)
    e0 = _isolated_energies(config, symbols, out, pdir, files, resume, workers or config.workers, progress)

    # 3. rattled supercells --------------------------------------------------------------------------------
    sc = make_supercell(crystal, np.diag(config.supercell)).crystal
    sdir_root = out / "samples"

    def sdir(i):
        return sdir_root / sample_dir_name(i)

    def sample(i):
        c = rattled_sample(sc, config.seed, i, position_sigma=config.position_sigma,
                           strain_sigma=config.strain_sigma)
        text = write_pw_input(c, config.pw, pseudo_dir=pdir, pseudo_files=files, prefix=f"s{i:05d}",
                              outdir="./tmp")
        rec = run_qe("pw.x", text, sdir(i), "scf", nprocs=nproc, timeout=config.timeout_s, check=False)
        res = _parse_sample_output(rec)  # SCFNotConvergedError first: more precise than the exit status
        _ase_crosscheck(rec.output_path, res, f"sample {i}")
        if res.forces is None or res.stress is None:
            raise QEOutputError(f"sample {i}: pw.x output has no forces/stress")
        _cleanup_tmp(sdir(i) / "tmp")
        return {"index": i, "energy": res.energy, "forces": res.forces.tolist(), "stress": res.stress.tolist(),
                "cell": c.cell.tolist(), "positions": c.positions.tolist(), "numbers": c.numbers.tolist(),
                "n_scf_iterations": res.n_scf_iterations, "seconds": rec.seconds}

    n = config.n_samples
    todo = range(n)
    if max_samples is not None:
        finished = [i for i in range(n) if resume and load_result(sdir(i)) is not None]
        pending = [i for i in range(n) if i not in set(finished)][:max_samples]
        todo = sorted(finished + pending)
    rep = run_samples(todo, sdir, sample, workers=workers or config.workers, scheduler=scheduler or config.scheduler,
                      resume=resume,
                      desc="rattled SCF", progress=progress)

    # 4. export -----------------------------------------------------------------------------------------------
    results = [r for r in (load_result(sdir(i)) for i in range(n)) if r is not None]
    path = out / config.output
    write_extxyz(path, results, e0, comment_info={"pseudo_family": config.pw.pseudo_family,
                                                  "ecutwfc_ry": config.pw.ecutwfc,
                                                  "ecutrho_ry": config.pw.ecutrho,
                                                  "kpts": "gamma" if config.pw.gamma_only else
                                                  "x".join(map(str, config.pw.kpts))})
    secs = [r["seconds"] for r in results]
    meta = {"config": to_dict(config), "isolated_energies_ev": e0, "n_samples_written": len(results),
            "computed_now": list(rep.computed), "reused": list(rep.reused), "failed": rep.failed,
            "mean_seconds_per_sample": float(np.mean(secs)) if secs else None,
            "wall_seconds_this_run": time.perf_counter() - t_start,
            "unit_cell": {"cell": crystal.cell.tolist(), "positions": crystal.positions.tolist(),
                          "symbols": symbols},
            "pseudopotentials": provenance(ps, config.pw.pseudo_family)}
    atomic_write_json(out / "dataset.json", meta)
    if rep.failed:
        print(f"[dataset] {len(rep.failed)} of {n} sample(s) failed and are not in {path.name}: "
              + ", ".join(f"#{i}" for i in sorted(rep.failed)) + " (why: the summary, dataset.json)")
    return DatasetResult(extxyz=path, n_samples=len(results), computed=rep.computed, reused=rep.reused,
                         failed=dict(rep.failed), isolated_energies=e0, unit_cell=crystal,
                         seconds_per_sample=float(np.mean(secs)) if secs else float("nan"),
                         samples_dir=sdir_root, n_requested=n)


def _parse_sample_output(rec):
    """Parsed pw.x output of a sample run; a crash (non-zero exit) is reported with its status and the
    last line pw.x wrote to stderr, an unconverged SCF as such."""
    try:
        res = parse_pw_output(rec.output_path.read_text())
    except SCFNotConvergedError:
        raise
    except QEOutputError:
        if rec.returncode == 0:
            raise
        err = rec.output_path.with_suffix(".err")
        tail = [ln.strip() for ln in err.read_text(errors="replace").splitlines() if ln.strip()] \
            if err.is_file() else []
        raise QERunError(f"pw.x exited with status {rec.returncode}"
                         + (f" (stderr: {short_message(tail[-1], 120)})" if tail else "")
                         + f"; see {rec.output_path.name}, {err.name}") from None
    if rec.returncode != 0:
        raise QERunError(f"pw.x exited with status {rec.returncode} (see {rec.output_path.name})")
    return res


def _relax_unit_cell(config: DatasetConfig, crystal: Crystal, out: Path, pdir: Path, files: dict,
                     resume: bool) -> Crystal:
    """The vc-relaxed unit cell (``out/relax``; reused when finished), or ``crystal`` without relax."""
    nproc = config.nprocs_per_worker
    if config.relax:
        rdir = out / "relax"
        done = load_result(rdir) if resume else None
        if done is None:
            text = write_pw_input(crystal, config.relax_pw, pseudo_dir=pdir, pseudo_files=files,
                                  calculation="vc-relax", prefix="relax",
                                  cell={"press_conv_thr": config.press_conv_thr})
            rec = run_qe("pw.x", text, rdir, "vcrelax", nprocs=nproc, timeout=config.timeout_s)
            res = parse_pw_output(rec.output_path.read_text())
            if res.crystal is None:
                raise QEOutputError(f"vc-relax in {rdir} ended without final coordinates")
            done = {"cell": res.crystal.cell.tolist(), "positions": res.crystal.positions.tolist(),
                    "energy": res.energy, "seconds": rec.seconds}
            atomic_write_json(rdir / "result.json", done)
        crystal = Crystal(done["cell"], done["positions"], crystal.numbers, crystal.masses)
    return crystal


def _isolated_energies(config: DatasetConfig, symbols: list[str], out: Path, pdir: Path, files: dict,
                      resume: bool, workers: int, progress: bool) -> dict[str, float]:
    """Isolated-atom energies (eV) per element (``out/isolated/<El>``); {} when not configured."""
    nproc = config.nprocs_per_worker
    e0: dict[str, float] = {}
    if config.isolated_atoms:
        species = list(dict.fromkeys(symbols))
        box = config.isolated_box
        iso_pw = dataclasses.replace(config.pw, kpts=(1, 1, 1), gamma_only=True, smearing="gaussian",
                                     degauss=0.005, kshift=(0, 0, 0),
                                     conv_thr=config.isolated_conv_thr)

        def iso_dir(k):
            return out / "isolated" / species[k]

        def iso(k):
            el = species[k]
            z = chemical_symbols.index(el)
            # slightly orthorhombic box so that p-shell degeneracies do not trap the SCF
            atom = Crystal(np.diag([box, box * 1.05, box * 1.1]), [[0.0, 0.0, 0.0]], [z])
            unpaired = hund_unpaired(z)
            if unpaired is None:  # open d/f shell: smeared, spin-polarised
                pw_el, sysd = iso_pw, {"nspin": 2, "starting_magnetization(1)": 1.0}
            else:  # Hund's-rule spin with fixed integer occupations (fast, no smearing)
                pw_el = dataclasses.replace(iso_pw, smearing=None)
                sysd = {"nspin": 2, "occupations": "fixed", "tot_magnetization": unpaired}
            text = write_pw_input(atom, pw_el, pseudo_dir=pdir, pseudo_files=files, prefix=f"iso_{el}",
                                  system=sysd, electrons={"mixing_beta": 0.3, "mixing_mode": "local-TF",
                                                          "electron_maxstep": 300})
            rec = run_qe("pw.x", text, iso_dir(k), "scf", nprocs=nproc, timeout=config.timeout_s)
            res = parse_pw_output(rec.output_path.read_text())
            _cleanup_tmp(iso_dir(k) / "tmp")
            return {"element": el, "energy": res.energy, "seconds": rec.seconds, "unpaired": unpaired}

        rep = run_samples(range(len(species)), iso_dir, iso, workers=workers or config.workers,
                          resume=resume, desc="isolated atoms", progress=progress)
        if rep.failed:
            k, msg = min(rep.failed.items())
            raise QEOutputError(f"isolated-atom run of {species[k]} failed (input/output in {iso_dir(k)}): "
                                f"{short_message(msg)}")
        for k, el in enumerate(species):
            e0[el] = float(load_result(iso_dir(k))["energy"])
    return e0


def _cleanup_tmp(d: Path) -> None:
    """Remove pw.x's scratch (wavefunctions, charge density) of a finished sample: not needed later."""
    import shutil  # noqa: PLC0415
    shutil.rmtree(d, ignore_errors=True)


def write_extxyz(path: str | Path, results: list[dict], isolated_energies: dict, comment_info: dict) -> None:
    """Write finished samples as extended XYZ (energy eV, forces eV/Å, stress eV/Å³ ASE sign), atomically.

    Each frame's info carries ``sample`` (index), ``config_type='rattled'``, the isolated-atom reference
    energies as ``E0_<El>`` (eV) and the DFT settings.
    """
    import io  # noqa: PLC0415
    import ase  # noqa: PLC0415
    from ase.calculators.singlepoint import SinglePointCalculator  # noqa: PLC0415
    from ase.io import write  # noqa: PLC0415

    frames = []
    for r in sorted(results, key=lambda r: r["index"]):
        at = ase.Atoms(numbers=r["numbers"], positions=r["positions"], cell=r["cell"], pbc=True)
        s = np.array(r["stress"])
        at.calc = SinglePointCalculator(at, energy=r["energy"], forces=np.array(r["forces"]),
                                        stress=s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
        at.info["sample"] = int(r["index"])
        at.info["config_type"] = "rattled"
        for el, e in isolated_energies.items():
            at.info[f"E0_{el}"] = float(e)
        at.info.update(comment_info)
        frames.append(at)
    buf = io.StringIO()
    if frames:
        write(buf, frames, format="extxyz")
    atomic_write_text(path, buf.getvalue())
