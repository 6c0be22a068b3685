"""Quantum ESPRESSO outputs: pw.x standard output, ph.x standard output and dynamical-matrix files (ε∞, Z*,
positions), matdyn frequency files. The inputs QE reads are written by :mod:`phonjax.dataset.qe_io`.

All parsed quantities are converted to phonjax units here (the one place Ry/bohr meet eV/Å):
energy eV (Ry × 13.6057), forces eV/Å (Ry/bohr × 25.711), stress eV/Å³ with ASE's sign convention
(σ = (1/V) ∂E/∂ε, positive = tensile; QE prints the opposite sign, P = −tr σ/3 > 0 under compression),
matdyn frequencies cm⁻¹ → THz, positions Å. Born charges Z*[atom, E_dir, u_dir] (first index = field, as
phonopy's BORN), as printed (no charge sum rule imposed here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

from phonjax import units
from phonjax.structure import Crystal

__all__ = ["QEOutputError", "SCFNotConvergedError", "PwResult", "parse_pw_output", "parse_matdyn_freq",
           "parse_dyn_dielectric", "parse_ph_dielectric", "dielectric_positions", "has_dielectric",
           "RY_BOHR3_TO_EV_A3"]

RY_BOHR3_TO_EV_A3 = units.RYDBERG_EV / units.BOHR_A**3


class QEOutputError(ValueError):
    """A QE output file is missing, truncated, corrupted or reports an error."""


class SCFNotConvergedError(QEOutputError):
    """pw.x stopped without reaching SCF convergence."""


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


# ------------------------------------------------------------------------------------------ matdyn.x
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


# ------------------------------------------------------------------------------------------- ε∞ and Z*
_NUM = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"
_DYN_EPS = "Dielectric Tensor:"
_PH_EPS = "Dielectric constant in cartesian axis"
_PH_ZEU = "Effective charges (d Force / dE) in cartesian axis"


def _nums(s: str) -> list[float]:
    """Every number of ``s`` (integers too; Fortran D exponents)."""
    return [float(x.replace("D", "E").replace("d", "e")) for x in re.findall(_NUM, s)]


def has_dielectric(text: str) -> bool:
    """Whether ``text`` is a ph.x output or dynamical-matrix file with ε∞ (how ``read_born`` tells QE files)."""
    return _DYN_EPS in text or _PH_EPS in text


def _last_line(lines: list[str], key: str) -> int:
    return max(k for k, ln in enumerate(lines) if key in ln)


def parse_dyn_dielectric(text: str) -> tuple[np.ndarray, np.ndarray]:
    """ε∞ (3,3) and Z* (n, 3, 3) [atom, E_dir, u_dir] from a ph.x dynamical-matrix file at Γ (``fildyn`` or
    ``fildyn1``) written with ``epsil=.true.``: the last 'Dielectric Tensor:' and 'Effective Charges E-U:
    Z_{alpha}{s,beta}' blocks (alpha = E)."""
    if _DYN_EPS not in text:
        raise QEOutputError("the dynamical-matrix file has no dielectric tensor (ph.x run without epsil?)")
    lines = text.splitlines()
    i = _last_line(lines, _DYN_EPS)
    eps = np.array([_nums(ln) for ln in lines[i + 1:i + 6] if _nums(ln)][:3])
    if not any("Effective Charges E-U" in ln for ln in lines):
        raise QEOutputError("the dynamical-matrix file has no 'Effective Charges E-U' block (zeu)")
    k = _last_line(lines, "Effective Charges E-U") + 1
    zs = []
    while k < len(lines):
        ln = lines[k]
        if re.match(r"\s*atom\s*#", ln):
            zs.append([_nums(lines[k + 1 + r])[:3] for r in range(3)])
            k += 4
            continue
        if ln.strip() and not _nums(ln):
            break
        k += 1
    return _checked(eps, zs)


def parse_ph_dielectric(text: str, asr: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ε∞ (3,3) and Z* (n, 3, 3) [atom, E_dir, u_dir] from ph.x standard output (``epsil``/``zeu``): the last
    'Dielectric constant in cartesian axis' block and the last 'Effective charges (d Force / dE) in cartesian
    axis' block — the one 'with asr applied' when ph.x prints both (rows Ex, Ey, Ez = field direction);
    ``asr=False``: the first such block, as computed (so that a sum-rule violation can be reported)."""
    if _PH_EPS not in text:
        raise QEOutputError("ph.x output has no dielectric constant (epsil=.false. or run failed)")
    lines = text.splitlines()
    i = _last_line(lines, _PH_EPS)
    eps = np.array([_nums(ln) for ln in lines[i + 1:i + 6] if re.search(r"\(", ln)][:3])
    if not any(_PH_ZEU in ln for ln in lines):
        raise QEOutputError("ph.x output has no 'Effective charges (d Force / dE)' block (run ph.x with zeu/epsil)")
    k = (_last_line(lines, _PH_ZEU) if asr else min(k for k, ln in enumerate(lines) if _PH_ZEU in ln)) + 1
    zs = []
    while k < len(lines):
        ln = lines[k]
        if re.match(r"\s*atom\s+\d+", ln):
            rows = []
            for r in range(1, 4):
                m = re.search(r"\((.*)\)", lines[k + r]) if k + r < len(lines) else None
                rows.append(_nums(m.group(1))[:3] if m else [])
            zs.append(rows)
            k += 4
            continue
        if ln.strip() and zs:
            break
        k += 1
    return _checked(eps, zs)


def _checked(eps: np.ndarray, zs: list) -> tuple[np.ndarray, np.ndarray]:
    if eps.shape != (3, 3):
        raise QEOutputError("could not read a 3x3 dielectric tensor (corrupted block)")
    try:
        z = np.array(zs, dtype=np.float64)
    except ValueError:
        raise QEOutputError("malformed effective-charge block") from None
    if z.ndim != 3 or z.shape[1:] != (3, 3) or len(z) == 0:
        raise QEOutputError("could not read the effective charges (corrupted block)")
    return eps, z


def dielectric_positions(text: str) -> np.ndarray | None:
    """Cartesian positions (n, 3) Å of the atoms a ph.x output or dynamical-matrix file lists (alat from its
    header), or None when it lists none."""
    if _DYN_EPS in text:
        return _dyn_positions(text.splitlines())
    alat = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _NUM + r")\s*a\.u\.", text)
    block = re.search(r"site n\.\s+atom.*positions \(alat units\)\n((?:\s+\d+\s+\S+.*tau\(.*\n)+)", text)
    if alat is None or block is None:
        return None
    pos = []
    for ln in block.group(1).splitlines():
        mm = re.match(r"\s*\d+\s+(\S+)\s+(?:\S+\s+)?tau\(\s*\d+\)\s*=\s*\((.*)\)", ln)
        if mm:
            pos.append(_nums(mm.group(2))[:3])
    return np.array(pos) * float(alat.group(1)) * units.BOHR_A


def _dyn_positions(lines: list[str]) -> np.ndarray | None:
    """Positions (n, 3) Å from the header of a ph.x dynamical-matrix file, or None."""
    try:
        hdr = _nums(lines[2])
        ntyp, nat, ibrav = int(hdr[0]), int(hdr[1]), int(hdr[2])
        alat = hdr[3] * units.BOHR_A
        k = 3 + (4 if ibrav == 0 else 0) + ntyp  # 'Basis vectors' + 3 lines when ibrav = 0
        return np.array([_nums(ln)[2:5] for ln in lines[k:k + nat]]) * alat
    except (IndexError, ValueError):
        return None
