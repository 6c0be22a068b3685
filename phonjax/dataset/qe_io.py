"""Quantum ESPRESSO text I/O: pw.x / ph.x / q2r.x / matdyn.x inputs and output parsers.

All parsed quantities are converted to phonjax units here (the one place Ry/bohr meet eV/Å):
energy eV (Ry × 13.6057), forces eV/Å (Ry/bohr × 25.711), stress eV/Å³ with ASE's sign convention
(σ = (1/V) ∂E/∂ε, positive = tensile; QE prints the opposite sign, P = −tr σ/3 > 0 under compression),
matdyn frequencies cm⁻¹ → THz. Born charges Z*[atom, E_dir, u_dir] (first index = field, as phonopy's BORN).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

from ..structure import Crystal
from .. import units

RY_BOHR3_TO_EV_A3 = units.RYDBERG_EV / units.BOHR_A**3


class QEOutputError(ValueError):
    """A QE output file is missing, truncated, corrupted or reports an error."""


class SCFNotConvergedError(QEOutputError):
    """pw.x stopped without reaching SCF convergence."""


@dataclass(frozen=True)
class PwSettings:
    """Numerical settings of pw.x runs (config-loadable).

    ecutwfc/ecutrho Ry; kpts Monkhorst–Pack grid (``[1,1,1]`` with ``gamma_only`` → ``K_POINTS gamma``);
    conv_thr Ry (total, as QE); degauss Ry (only with ``smearing``).
    """

    pseudo_family: str = "PBE"
    pseudo_dir: str | None = None
    ecutwfc: float = 80.0
    ecutrho: float = 960.0
    kpts: tuple[int, int, int] = (6, 6, 6)
    kshift: tuple[int, int, int] = (0, 0, 0)
    gamma_only: bool = False
    conv_thr: float = 1e-10
    mixing_beta: float = 0.7
    electron_maxstep: int = 100
    smearing: str | None = None
    degauss: float = 0.01


def _fmt(v) -> str:
    if isinstance(v, bool):
        return ".true." if v else ".false."
    if isinstance(v, str):
        return f"'{v}'"
    if isinstance(v, float):
        return f"{v:.12g}".replace("e", "d") if ("e" in f"{v:.12g}") else f"{v:.12g}"
    return str(v)


def _namelist(name: str, entries: dict) -> str:
    lines = [f"&{name}"]
    for k, v in entries.items():
        if v is None:
            continue
        lines.append(f"  {k} = {_fmt(v)}")
    lines.append("/")
    return "\n".join(lines)


def species_of(crystal: Crystal) -> list[tuple[str, float]]:
    """Distinct (symbol, mass amu) in order of first appearance."""
    seen: dict[str, float] = {}
    for z, m in zip(crystal.numbers, crystal.masses):
        s = chemical_symbols[int(z)]
        seen.setdefault(s, float(m))
    return list(seen.items())


def write_pw_input(crystal: Crystal, settings: PwSettings, *, pseudo_dir, pseudo_files: dict[str, str],
                   calculation: str = "scf", prefix: str = "pwscf", outdir: str = "./tmp",
                   kpts: tuple[int, int, int] | None = None, gamma_only: bool | None = None,
                   control: dict | None = None, system: dict | None = None, electrons: dict | None = None,
                   ions: dict | None = None, cell: dict | None = None) -> str:
    """pw.x input text for ``crystal`` (cell and Cartesian positions written in Å).

    ``control``/``system``/``electrons``/``ions``/``cell`` add or override namelist entries.
    """
    crystal = Crystal.coerce(crystal)
    species = species_of(crystal)
    missing = [s for s, _ in species if s not in pseudo_files]
    if missing:
        raise ValueError(f"no pseudopotential file given for {missing}")
    kpts = tuple(settings.kpts if kpts is None else kpts)
    gamma = settings.gamma_only if gamma_only is None else gamma_only
    ctl = {"calculation": calculation, "prefix": prefix, "outdir": outdir, "pseudo_dir": str(pseudo_dir),
           "tprnfor": True, "tstress": True, "disk_io": "low" if calculation == "scf" else None}
    ctl.update(control or {})
    sysd = {"ibrav": 0, "nat": crystal.n_atoms, "ntyp": len(species), "ecutwfc": float(settings.ecutwfc),
            "ecutrho": float(settings.ecutrho)}
    if settings.smearing:
        sysd.update(occupations="smearing", smearing=settings.smearing, degauss=float(settings.degauss))
    sysd.update(system or {})
    ele = {"conv_thr": float(settings.conv_thr), "mixing_beta": float(settings.mixing_beta),
           "electron_maxstep": int(settings.electron_maxstep)}
    ele.update(electrons or {})
    parts = [_namelist("CONTROL", ctl), _namelist("SYSTEM", sysd), _namelist("ELECTRONS", ele)]
    if calculation in ("relax", "vc-relax", "md", "vc-md") or ions:
        parts.append(_namelist("IONS", ions or {}))
    if calculation in ("vc-relax", "vc-md") or cell:
        parts.append(_namelist("CELL", cell or {}))
    parts.append("ATOMIC_SPECIES")
    parts += [f"{s} {m:.10f} {pseudo_files[s]}" for s, m in species]
    parts.append("CELL_PARAMETERS angstrom")
    parts += ["  ".join(f"{x:20.14f}" for x in row) for row in crystal.cell]
    parts.append("ATOMIC_POSITIONS angstrom")
    parts += [f"{chemical_symbols[int(z)]:3s} " + "  ".join(f"{x:20.14f}" for x in p)
              for z, p in zip(crystal.numbers, crystal.positions)]
    if gamma:
        parts.append("K_POINTS gamma")
    else:
        parts.append("K_POINTS automatic")
        parts.append(" ".join(str(int(k)) for k in kpts) + " " + " ".join(str(int(s)) for s in settings.kshift))
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------- pw.x output
@dataclass(frozen=True)
class PwResult:
    """Parsed pw.x output (phonjax units).

    energy eV (last '!' total energy); forces (n,3) eV/Å; stress (3,3) eV/Å³ (ASE sign, see module doc);
    crystal: final structure (relaxations) or None when the output holds no final coordinates;
    stress_kbar_printed: QE's printed stress in kbar (QE sign) for cross-checks.
    """

    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None
    converged: bool
    n_scf_iterations: int | None
    n_atoms: int
    crystal: Crystal | None = None
    stress_kbar_printed: np.ndarray | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


_FLOAT = r"[-+]?\d*\.\d+(?:[eEdD][-+]?\d+)?"


def _floats(s: str) -> list[float]:
    return [float(x.replace("D", "e").replace("d", "e")) for x in re.findall(_FLOAT, s)]


def parse_pw_output(text: str, *, require_converged: bool = True, require_done: bool = True) -> PwResult:
    """Parse pw.x standard output.

    Raises SCFNotConvergedError when QE says 'convergence NOT achieved' (unless ``require_converged`` is
    False), QEOutputError for a QE error banner, a truncated file (no 'JOB DONE.') or missing data.
    """
    if "%%%%%%%%%%%%%%" in text:
        m = re.search(r"%{10,}\s*\n(.*?)\n\s*%{10,}", text, re.S)
        msg = " ".join(m.group(1).split()) if m else "unknown error"
        raise QEOutputError(f"pw.x stopped with an error: {msg}")
    done = "JOB DONE." in text
    if require_done and not done:
        raise QEOutputError("pw.x output is truncated (no 'JOB DONE.'): run killed or crashed")
    not_conv = "convergence NOT achieved" in text
    if not_conv and require_converged:
        raise SCFNotConvergedError("pw.x SCF did not converge ('convergence NOT achieved'): "
                                   "raise electron_maxstep or lower mixing_beta")
    m = re.search(r"number of atoms/cell\s*=\s*(\d+)", text)
    if not m:
        raise QEOutputError("pw.x output has no 'number of atoms/cell' line: not a pw.x output?")
    nat = int(m.group(1))
    energies = re.findall(r"^!\s+total energy\s*=\s*(" + _FLOAT + r")\s*Ry", text, re.M)
    if not energies and not_conv:  # last SCF iterate of an unconverged run (require_converged=False)
        energies = re.findall(r"^\s+total energy\s*=\s*(" + _FLOAT + r")\s*Ry", text, re.M)
    if not energies:
        raise QEOutputError("pw.x output has no converged total energy ('!' line)")
    energy = float(energies[-1]) * units.RYDBERG_EV
    iters = re.findall(r"convergence has been achieved in\s+(\d+)\s+iterations", text)

    forces = None
    blocks = text.split("Forces acting on atoms")
    if len(blocks) > 1:
        last = blocks[-1]
        rows = re.findall(r"atom\s+\d+\s+type\s+\d+\s+force\s*=\s*(" + _FLOAT + r")\s+(" + _FLOAT + r")\s+("
                          + _FLOAT + r")", last)
        if len(rows) < nat:
            raise QEOutputError(f"pw.x forces block has {len(rows)} rows for {nat} atoms (corrupted output)")
        forces = np.array(rows[:nat], dtype=np.float64) * units.RY_PER_BOHR_TO_EV_PER_A

    stress = kbar = None
    sblocks = re.split(r"total\s+stress\s+\(Ry/bohr\*\*3\)", text)
    if len(sblocks) > 1:
        lines = sblocks[-1].splitlines()[1:4]
        vals = [_floats(ln) for ln in lines]
        if len(vals) != 3 or any(len(v) != 6 for v in vals):
            raise QEOutputError("pw.x stress block is corrupted")
        arr = np.array(vals)
        stress = -arr[:, :3] * RY_BOHR3_TO_EV_A3
        kbar = arr[:, 3:]

    crystal = _parse_final_coordinates(text, nat)
    warns = tuple(["SCF not converged"] if not_conv else [])
    return PwResult(energy=energy, forces=forces, stress=stress, converged=not not_conv,
                    n_scf_iterations=int(iters[-1]) if iters else None, n_atoms=nat, crystal=crystal,
                    stress_kbar_printed=kbar, warnings=warns)


def _parse_final_coordinates(text: str, nat: int) -> Crystal | None:
    if "Begin final coordinates" not in text:
        return None
    block = text.split("Begin final coordinates", 1)[1].split("End final coordinates", 1)[0]
    alat_bohr = None
    m = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _FLOAT + ")", text)
    if m:
        alat_bohr = float(m.group(1))
    cm = re.search(r"CELL_PARAMETERS\s*\(?\s*(angstrom|bohr|alat\s*=\s*(" + _FLOAT + r"))\s*\)?\s*\n"
                   r"(.*\n.*\n.*\n)", block)
    if cm:
        cell = np.array([_floats(ln) for ln in cm.group(3).strip().splitlines()])
        unit = cm.group(1)
        if unit.startswith("bohr"):
            cell = cell * units.BOHR_A
        elif unit.startswith("alat"):
            cell = cell * float(cm.group(2)) * units.BOHR_A
    else:  # fixed-cell relax: initial cell from the header
        m = re.search(r"crystal axes: \(cart. coord. in units of alat\)\s*\n(.*\n.*\n.*\n)", text)
        if not m or alat_bohr is None:
            raise QEOutputError("cannot find the cell in the pw.x output")
        cell = np.array([_floats(ln)[-3:] for ln in m.group(1).strip().splitlines()]) * alat_bohr * units.BOHR_A
    pm = re.search(r"ATOMIC_POSITIONS\s*\(?\s*(\w+)\s*\)?\s*\n", block)
    if not pm:
        raise QEOutputError("final coordinates without ATOMIC_POSITIONS")
    rows = block[pm.end():].strip().splitlines()[:nat]
    syms, pos = [], []
    for ln in rows:
        parts = ln.split()
        syms.append(re.sub(r"\d+$", "", parts[0]))
        pos.append([float(x) for x in parts[1:4]])
    pos = np.array(pos)
    unit = pm.group(1).lower()
    if unit == "crystal":
        pos = pos @ cell
    elif unit == "bohr":
        pos = pos * units.BOHR_A
    elif unit == "alat":
        pos = pos * alat_bohr * units.BOHR_A
    numbers = [chemical_symbols.index(s) for s in syms]
    return Crystal(cell, pos, numbers)


# --------------------------------------------------------------------------------------- ph.x and friends
def write_ph_input(*, prefix: str, outdir: str = "./tmp", fildyn: str = "dyn", tr2_ph: float = 1e-16,
                   epsil: bool = True, trans: bool = True, qgrid: tuple[int, int, int] | None = None,
                   title: str = "phonons") -> str:
    """ph.x input: Γ only (``qgrid`` None; with ``epsil``: ε∞ and Z*) or a ``qgrid`` (ldisp)."""
    e = {"prefix": prefix, "outdir": outdir, "fildyn": fildyn, "tr2_ph": float(tr2_ph), "epsil": epsil,
         "trans": trans}
    if qgrid is not None:
        e.update(ldisp=True, nq1=int(qgrid[0]), nq2=int(qgrid[1]), nq3=int(qgrid[2]))
    text = title + "\n" + _namelist("INPUTPH", e) + "\n"
    if qgrid is None:
        text += "0.0 0.0 0.0\n"
    return text


def write_q2r_input(*, fildyn: str, flfrc: str, zasr: str = "crystal") -> str:
    return _namelist("INPUT", {"fildyn": fildyn, "zasr": zasr, "flfrc": flfrc}) + "\n"


def write_matdyn_input(qpoints_reduced: np.ndarray, *, flfrc: str, flfrq: str, asr: str = "crystal",
                       flvec: str | None = None) -> str:
    """matdyn.x input computing frequencies at explicit q (reduced coordinates of the primitive reciprocal
    basis, no 2π). With Z*/ε in ``flfrc`` matdyn adds the non-analytic term; at Γ the direction is taken
    from the neighbouring q-point of the list (as phonopy does along a band path)."""
    q = np.asarray(qpoints_reduced, dtype=np.float64).reshape(-1, 3)
    nl = _namelist("INPUT", {"asr": asr, "flfrc": flfrc, "flfrq": flfrq, "flvec": flvec or "/dev/null",
                             "fleig": "/dev/null", "fldos": "/dev/null", "q_in_band_form": False,
                             "q_in_cryst_coord": True, "dos": False})
    lines = [nl, str(len(q))] + [f"{a:.12f} {b:.12f} {c:.12f}" for a, b, c in q]
    return "\n".join(lines) + "\n"


def parse_matdyn_freq(text: str) -> tuple[np.ndarray, np.ndarray]:
    """matdyn ``flfrq`` file → (q (nq,3) Cartesian in 2π/alat, frequencies (nq, nbnd) THz)."""
    m = re.search(r"nbnd\s*=\s*(\d+)\s*,\s*nks\s*=\s*(\d+)", text)
    if not m:
        raise QEOutputError("not a matdyn frequency file (no '&plot nbnd=..., nks=...' header)")
    nb, nk = int(m.group(1)), int(m.group(2))
    nums = _floats(text[m.end():].split("/", 1)[1])
    need = nk * (3 + nb)
    if len(nums) < need:
        raise QEOutputError(f"matdyn frequency file truncated ({len(nums)} of {need} numbers)")
    arr = np.array(nums[:need]).reshape(nk, 3 + nb)
    return arr[:, :3], arr[:, 3:] / units.THZ_TO_CM1


def parse_dyn_dielectric(text: str) -> tuple[np.ndarray, np.ndarray]:
    """ε∞ (3,3) and Z* (n, 3, 3) [atom, E_dir, u_dir] from a ph.x dynamical-matrix file at Γ (``fildyn``
    or ``fildyn1``) written with ``epsil=.true.`` ('Dielectric Tensor:' and 'Effective Charges E-U')."""
    if "Dielectric Tensor" not in text:
        raise QEOutputError("the dynamical-matrix file has no dielectric tensor (ph.x run without epsil?)")
    blk = text.split("Dielectric Tensor:", 1)[1]
    rows = [r for r in blk.strip().splitlines()[:3]]
    eps = np.array([_floats(r) for r in rows])
    if eps.shape != (3, 3):
        raise QEOutputError("corrupted dielectric tensor block")
    m = re.search(r"Effective Charges E-U.*\n", text)
    if not m:
        raise QEOutputError("the dynamical-matrix file has no 'Effective Charges E-U' block (zeu)")
    lines = text[m.end():].lstrip("\n").splitlines()
    z = []
    i = 0
    while i < len(lines) and re.match(r"\s*atom\s*#\s*\d+", lines[i]):
        z.append([_floats(lines[i + k]) for k in (1, 2, 3)])
        i += 4
    zs = np.array(z)
    if zs.ndim != 3 or zs.shape[1:] != (3, 3):
        raise QEOutputError("corrupted effective-charge block")
    return eps, zs


def parse_ph_dielectric_stdout(text: str, asr: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ε∞ and Z* (with the acoustic sum rule applied by ph.x; ``asr=False``: as computed, so that the
    sum-rule violation can be reported) from ph.x standard output."""
    if "Dielectric constant in cartesian axis" not in text:
        raise QEOutputError("ph.x output has no dielectric constant (epsil=.false. or run failed)")
    blk = text.split("Dielectric constant in cartesian axis", 1)[1]
    eps = np.array([_floats(r) for r in re.findall(r"\(([^)]*)\)", blk)[:3]])
    key = "Effective charges (d Force / dE) in cartesian axis with asr applied"
    if key not in text or not asr:
        key = "Effective charges (d Force / dE) in cartesian axis"
    if key not in text:
        raise QEOutputError("ph.x output has no effective charges")
    blk = text.split(key, 1)[1]
    z = []
    for am in re.finditer(r"atom\s+\d+\s+\S+[^\n]*\n((?:\s*E\*?[xyz]\s*\([^)]*\)\s*\n){3})", blk):
        z.append([_floats(r) for r in re.findall(r"\(([^)]*)\)", am.group(1))])
        if blk[am.end():].lstrip().startswith(("atom",)) is False:
            break
    zs = np.array(z)
    if eps.shape != (3, 3) or zs.ndim != 3:
        raise QEOutputError("corrupted dielectric/effective-charge block in ph.x output")
    return eps, zs
