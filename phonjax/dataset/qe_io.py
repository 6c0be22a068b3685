"""Quantum ESPRESSO inputs: pw.x / ph.x / q2r.x / matdyn.x input text (cell and positions in Å, q in reduced
coordinates). QE's outputs are parsed by :mod:`phonjax.io.qe`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols

from ..structure import Crystal


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


def ph_input_with(text: str, **entries) -> str:
    """A ph.x input ``text`` with namelist entries (values as Fortran literals, e.g. ``recover=".true."``)
    added at the top of &INPUTPH."""
    add = "".join(f"  {k} = {v}\n" for k, v in entries.items())
    return text.replace("&INPUTPH\n", "&INPUTPH\n" + add, 1)


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
